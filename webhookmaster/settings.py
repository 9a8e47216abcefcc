"""Runtime settings, read from ``WM_*`` environment variables.

Every setting is one dataclass field whose metadata names its variable, says what it does and
gives the pydantic type its text is parsed into at :func:`load` (ports in 1..65535, positive
sizes and timeouts, strict booleans, five retry delays, CIDR lists, API keys); a bad value is a
:class:`SettingsError` naming the variable. The configuration table in docs/configuration.md
is generated from these fields (``webhookmaster settings --table``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from schemas import topics as _topics
from webhookmaster import kafka_security as _kafka_security
from webhookmaster import retry_ladder as _ladder

PROJECT_ROOT = Path(__file__).resolve().parent.parent

GROUP_PROTOCOLS = ("auto", "consumer", "classic")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(raw: Any) -> Any:
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("expected one of true/false, 1/0, yes/no, on/off")
    return raw


def _parts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cidrs(text: str) -> str:
    for part in _parts(text):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP network (CIDR)") from None
    return text


def _api_keys(text: str) -> str:
    for position, key in enumerate(_parts(text), start=1):
        if not all("!" <= ch <= "~" for ch in key):
            raise ValueError(f"key {position} has a space, control or non-ASCII character")
    return text


def _retry_ladder(text: str) -> str:
    _ladder.parse_delays(text)
    return text


def _group_protocol(text: str) -> str:
    if text not in GROUP_PROTOCOLS:
        raise ValueError("expected auto, consumer or classic")
    return text


def _log_level(text: str) -> str:
    if text.strip().upper() not in logging.getLevelNamesMapping():
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return text


Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
SecondsOrZero = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ShareAboveZero = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Bool = Annotated[bool, BeforeValidator(_bool)]
Cidrs = Annotated[str, AfterValidator(_cidrs)]
ApiKeys = Annotated[str, AfterValidator(_api_keys)]
RetryLadder = Annotated[str, AfterValidator(_retry_ladder)]
LogLevel = Annotated[str, AfterValidator(_log_level)]
GroupProtocol = Annotated[str, AfterValidator(_group_protocol)]


def _one_of(*choices: str) -> Any:
    def check(text: str) -> str:
        word = text.strip().upper()
        if word and word not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return word

    return Annotated[str, AfterValidator(check)]


SecurityProtocol = _one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SaslMechanism = _one_of("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


def _setting(env: str, default: Any, doc: str, kind: Any = str, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "kind": kind, "secret": secret})


def _file_of(env: str) -> Any:
    """The ``<env>_FILE`` twin of a secret setting: a file holding its value instead."""
    return _setting(f"{env}_FILE", "", f"File holding {env} instead (e.g. a mounted Secret).")


@dataclass(frozen=True)
class StackSettings:
    """Knobs of the local development stack (``webhookmaster stack``, the tests): where it keeps
    its state, how it assembles and runs Kafka, its local ports. The runtime reads the ports
    only to reach that stack when no WM_KAFKA_BOOTSTRAP / WM_DATABASE_URL is given."""

    state_dir: str = _setting(
        "WM_STATE_DIR",
        str(PROJECT_ROOT / ".wm-state" / "dev"),
        "Folder for the local stack: Kafka and PostgreSQL data, logs, pid files.",
    )
    kafka_port: int = _setting(
        "WM_KAFKA_PORT", 29092, "Local broker's client port (127.0.0.1).", kind=Port
    )
    kafka_controller_port: int = _setting(
        "WM_KAFKA_CONTROLLER_PORT",
        29093,
        "Local broker's KRaft controller port (127.0.0.1).",
        kind=Port,
    )
    kafka_version: str = _setting(
        "WM_KAFKA_VERSION",
        "4.1.1",
        "Apache Kafka version (3.9 or newer) the stack assembles from Maven Central.",
    )
    kafka_heap: str = _setting("WM_KAFKA_HEAP", "-Xms256m -Xmx1g", "JVM heap flags of the broker.")
    maven_args: str = _setting(
        "WM_MAVEN_ARGS", "", "Extra arguments for the Maven call that fetches the Kafka jars."
    )
    cache_dir: str = _setting(
        "WM_CACHE_DIR",
        str(Path.home() / ".cache" / "webhookmaster"),
        "Where the assembled Kafka jars are kept between runs.",
    )
    java: str = _setting("WM_JAVA", "java", "Java 17+ executable for the broker.")
    pg_port: int = _setting("WM_PG_PORT", 25432, "Local PostgreSQL port (127.0.0.1).", kind=Port)
    ready_timeout_s: float = _setting(
        "WM_READY_TIMEOUT",
        90.0,
        "Seconds the stack waits for each service to be ready.",
        kind=Seconds,
    )

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


@dataclass(frozen=True)
class Settings(StackSettings):
    """All knobs of WebhookMaster (the runtime's and, inherited, the local stack's); build with
    :func:`load`."""

    kafka_bootstrap: str = _setting(
        "WM_KAFKA_BOOTSTRAP",
        "",
        "Kafka bootstrap servers. Empty: the local broker the stack starts on WM_KAFKA_PORT.",
    )
    kafka_group_protocol: str = _setting(
        "WM_KAFKA_GROUP_PROTOCOL",
        "auto",
        "Consumer group protocol: 'consumer' (KIP-848, Kafka 4.x), 'classic' (any broker; "
        "cooperative-sticky assignment) or 'auto' (asks a broker: consumer on Kafka 4.x when "
        "its group.coordinator.rebalance.protocols lists it, else classic).",
        kind=GroupProtocol,
    )
    database_url: str = _setting(
        "WM_DATABASE_URL",
        "",
        "PostgreSQL URL. Empty: the local cluster the stack starts on WM_PG_PORT.",
    )
    db_schema: str = _setting(
        "WM_DB_SCHEMA", "public", "PostgreSQL schema that holds WebhookMaster's tables."
    )
    topic_prefix: str = _setting(
        "WM_TOPIC_PREFIX", "webhookmaster.", "Prefix of every topic name in the catalogue."
    )
    topic_partitions: int = _setting(
        "WM_TOPIC_PARTITIONS",
        6,
        "Partitions of the ingest, retry, dead-letter, attempt topics.",
        kind=Positive,
    )
    retention_ms: int = _setting(
        "WM_RETENTION_MS", 259_200_000, "Retention of every data topic (72 h).", kind=Positive
    )
    log_level: str = _setting(
        "WM_LOG_LEVEL", "INFO", "Log level of every component.", kind=LogLevel
    )
    gateway_host: str = _setting("WM_GATEWAY_HOST", "127.0.0.1", "Gateway listen address.")
    gateway_port: int = _setting("WM_GATEWAY_PORT", 28080, "Gateway listen port.", kind=Port)
    uvloop: bool = _setting(
        "WM_UVLOOP",
        True,
        "Run components on uvloop (when installed) instead of asyncio's loop.",
        kind=Bool,
    )
    health_host: str = _setting(
        "WM_HEALTH_HOST",
        "127.0.0.1",
        "Listen address of the agent's, scheduler's and projector's health and metrics server "
        "(0.0.0.0 in containers).",
    )
    agent_port: int = _setting(
        "WM_AGENT_PORT", 29101, "Delivery agent's health and metrics port.", kind=Port
    )
    scheduler_port: int = _setting(
        "WM_SCHEDULER_PORT", 29102, "Retry scheduler's health and metrics port.", kind=Port
    )
    projector_port: int = _setting(
        "WM_PROJECTOR_PORT", 29103, "Status projector's health and metrics port.", kind=Port
    )
    api_keys: str = _setting(
        "WM_API_KEYS",
        "",
        "Comma-separated API keys. Set: every /api/ route needs 'Authorization: Bearer <key>' "
        "(ingest also accepts a valid subscription signature).",
        kind=ApiKeys,
        secret=True,
    )
    max_body_bytes: int = _setting(
        "WM_MAX_BODY_BYTES",
        1_048_576,
        "Largest ingest body the gateway accepts (bytes).",
        kind=Positive,
    )
    list_share: float = _setting(
        "WM_LIST_SHARE",
        0.05,
        "Most of the gateway's event-loop time that subscription list pages may take while it "
        "is ingesting (0-1]; pages beyond it wait. Without ingest traffic they never wait.",
        kind=ShareAboveZero,
    )
    request_read_timeout_s: float = _setting(
        "WM_REQUEST_READ_TIMEOUT",
        10.0,
        "Seconds a client has to send a whole request (headers and body) to the gateway; "
        "slower ones get 408 and are disconnected.",
        kind=Seconds,
    )
    table_load_timeout_s: float = _setting(
        "WM_TABLE_LOAD_TIMEOUT",
        60.0,
        "Seconds a process waits to load the subscription table before it gives up.",
        kind=Seconds,
    )
    connect_timeout_s: float = _setting(
        "WM_CONNECT_TIMEOUT", 5.0, "Delivery connect timeout (seconds).", kind=Seconds
    )
    request_timeout_s: float = _setting(
        "WM_REQUEST_TIMEOUT", 15.0, "Delivery total timeout (seconds).", kind=Seconds
    )
    max_in_flight: int = _setting(
        "WM_MAX_IN_FLIGHT", 256, "Deliveries in flight per agent process.", kind=Positive
    )
    max_in_flight_per_subscription: int = _setting(
        "WM_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
        32,
        "Deliveries in flight per subscription in one agent process.",
        kind=Positive,
    )
    breaker_failures: int = _setting(
        "WM_BREAKER_FAILURES",
        10,
        "Circuit breaker window: the last this many attempts of a subscription are judged "
        "(see WM_BREAKER_RATIO).",
        kind=Positive,
    )
    breaker_ratio: float = _setting(
        "WM_BREAKER_RATIO",
        1.0,
        "Share of failures among the last WM_BREAKER_FAILURES attempts that opens a "
        "subscription's circuit breaker (1.0: that many failures in a row).",
        kind=ShareAboveZero,
    )
    breaker_cooldown_s: float = _setting(
        "WM_BREAKER_COOLDOWN",
        30.0,
        "Seconds an open circuit breaker waits before one probe delivery may go.",
        kind=Seconds,
    )
    idempotency_window_s: float = _setting(
        "WM_IDEMPOTENCY_WINDOW",
        86400.0,
        "Seconds a delivery agent remembers the id of a first attempt that carries the "
        "idempotency marker (fan-out expansion, Idempotency-Key): a record with the same id "
        "in the same ingest partition within it is dropped as a duplicate.",
        kind=Seconds,
    )
    idempotency_max_ids: int = _setting(
        "WM_IDEMPOTENCY_MAX_IDS",
        50000,
        "Most ids remembered per ingest partition an agent owns (bounds its memory, about 0.2 KB "
        "an id); beyond it the oldest are forgotten before the window ends.",
        kind=Positive,
    )
    auto_disable_after_s: float = _setting(
        "WM_AUTO_DISABLE_AFTER",
        432000.0,
        "Seconds a subscription's deliveries may keep failing (no success in between) before "
        "a delivery agent disables it (default 5 days, like Svix); a 410 Gone disables at once.",
        kind=Seconds,
    )
    allowed_cidrs: str = _setting(
        "WM_ALLOWED_CIDRS",
        "",
        "Comma-separated CIDRs that deliveries may target although they are not global "
        "(loopback, private, link-local). Empty: only global addresses.",
        kind=Cidrs,
    )
    retry_ladder: str = _setting(
        "WM_RETRY_LADDER",
        "10,30,60,300,900",
        "Delays (seconds) of the five retry tiers, in order.",
        kind=RetryLadder,
    )
    projector_batch_size: int = _setting(
        "WM_PROJECTOR_BATCH_SIZE",
        2000,
        "Most records the status projector writes to PostgreSQL in one transaction.",
        kind=Positive,
    )
    projector_batch_wait_s: float = _setting(
        "WM_PROJECTOR_BATCH_WAIT",
        0.2,
        "Seconds the status projector waits for a batch to fill before it writes it.",
        kind=SecondsOrZero,
    )
    retention_interval_s: float = _setting(
        "WM_RETENTION_INTERVAL",
        3600.0,
        "Seconds between the status projector's retention runs (drops partitions older than "
        "WM_RETENTION_MS, creates the coming days' partitions).",
        kind=Seconds,
    )
    secret_keys: str = _setting(
        "WM_SECRET_KEYS",
        "",
        "Comma-separated Fernet keys that encrypt subscription secrets on the subscriptions topic, "
        "newest first: the first encrypts, all decrypt ('webhookmaster secret-key' makes one). "
        "The gateway and the agents need a key; the local stack makes its own.",
        kind=str,
        secret=True,
    )
    secret_rotation_grace_s: float = _setting(
        "WM_SECRET_ROTATION_GRACE",
        86400.0,
        "Seconds after a subscription's secret rotation (POST .../rotate-secret/) during which "
        "deliveries also carry the previous secret's signature (default 24 h).",
        kind=Seconds,
    )
    secret_keys_file: str = _setting(
        "WM_SECRET_KEYS_FILE",
        "",
        "File holding the Fernet keys instead, one per line, newest first (e.g. a mounted "
        "Kubernetes Secret). Set WM_SECRET_KEYS or this, not both.",
    )
    tracing: bool = _setting(
        "WM_TRACING",
        False,
        "Export OpenTelemetry traces over OTLP/HTTP: ingest, produce, delivery attempt, retry "
        "hand-off; deliveries carry 'traceparent'. Off: no OpenTelemetry code is loaded.",
        kind=Bool,
    )
    otlp_endpoint: str = _setting(
        "WM_OTLP_ENDPOINT",
        "",
        "OTLP/HTTP traces URL (e.g. http://otel-collector:4318/v1/traces). Empty: the standard "
        "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables, else http://localhost:4318/v1/traces.",
    )
    tracing_sample_ratio: float = _setting(
        "WM_TRACING_SAMPLE_RATIO",
        1.0,
        "Share of new traces recorded (0-1); a producer's traceparent keeps its own sampling "
        "decision.",
        kind=Ratio,
    )
    # Kafka client security (docs/kafka-security.md); checked together by kafka_security.check
    kafka_security_protocol: str = _setting(
        "WM_KAFKA_SECURITY_PROTOCOL",
        "",
        "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. Empty: PLAINTEXT "
        "(or what WM_KAFKA_CONFIG_SECURITY_PROTOCOL / the properties file says).",
        kind=SecurityProtocol,
    )
    kafka_ssl_ca_file: str = _setting(
        "WM_KAFKA_SSL_CA_FILE",
        "",
        "PEM file of the CA(s) that sign the brokers' certificates. Empty: the system's CAs.",
    )
    kafka_ssl_cert_file: str = _setting(
        "WM_KAFKA_SSL_CERT_FILE",
        "",
        "PEM file of the client certificate (mutual TLS); needs WM_KAFKA_SSL_KEY_FILE.",
    )
    kafka_ssl_key_file: str = _setting(
        "WM_KAFKA_SSL_KEY_FILE", "", "PEM file of the client certificate's private key."
    )
    kafka_ssl_key_password: str = _setting(
        "WM_KAFKA_SSL_KEY_PASSWORD",
        "",
        "Password of an encrypted private key.",
        secret=True,
    )
    kafka_ssl_key_password_file: str = _file_of("WM_KAFKA_SSL_KEY_PASSWORD")
    kafka_ssl_verify_hostname: bool = _setting(
        "WM_KAFKA_SSL_VERIFY_HOSTNAME",
        True,
        "Check that the broker's certificate names the host connected to (false only for "
        "brokers whose certificates lack the right names).",
        kind=Bool,
    )
    kafka_sasl_mechanism: str = _setting(
        "WM_KAFKA_SASL_MECHANISM",
        "",
        "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (OIDC client "
        "credentials, the WM_KAFKA_OAUTH_ settings). Needed with SASL_SSL / SASL_PLAINTEXT.",
        kind=SaslMechanism,
    )
    kafka_sasl_username: str = _setting(
        "WM_KAFKA_SASL_USERNAME", "", "SASL user name (PLAIN, SCRAM)."
    )
    kafka_sasl_password: str = _setting(
        "WM_KAFKA_SASL_PASSWORD", "", "SASL password (PLAIN, SCRAM).", secret=True
    )
    kafka_sasl_password_file: str = _file_of("WM_KAFKA_SASL_PASSWORD")
    kafka_oauth_token_url: str = _setting(
        "WM_KAFKA_OAUTH_TOKEN_URL",
        "",
        "OAUTHBEARER: the OIDC token endpoint librdkafka gets tokens from (client credentials).",
    )
    kafka_oauth_client_id: str = _setting(
        "WM_KAFKA_OAUTH_CLIENT_ID", "", "OAUTHBEARER: the OIDC client id."
    )
    kafka_oauth_client_secret: str = _setting(
        "WM_KAFKA_OAUTH_CLIENT_SECRET", "", "OAUTHBEARER: the OIDC client secret.", secret=True
    )
    kafka_oauth_client_secret_file: str = _file_of("WM_KAFKA_OAUTH_CLIENT_SECRET")
    kafka_oauth_scope: str = _setting(
        "WM_KAFKA_OAUTH_SCOPE", "", "OAUTHBEARER: scope(s) to request, if the provider needs any."
    )
    kafka_config_file: str = _setting(
        "WM_KAFKA_CONFIG_FILE",
        "",
        "A librdkafka properties file (name=value lines, # comments), e.g. the client.properties "
        "a Kafka service hands out; the WM_KAFKA_CONFIG_ variables override it.",
    )
    kafka_check_timeout_s: float = _setting(
        "WM_KAFKA_CHECK_TIMEOUT",
        30.0,
        "Seconds a component or command waits at start for the cluster to answer before it "
        "exits with one error line (an authentication or TLS failure exits at once); 0: no check.",
        kind=SecondsOrZero,
    )
    kafka_commit_interval_s: float = _setting(
        "WM_KAFKA_COMMIT_INTERVAL",
        0.5,
        "Least seconds between two offset commits of a consumer while it fetches (asynchronous, "
        "one at a time, only offsets that advanced; rebalances and shutdown commit at once). "
        "Shorter: less work redone after a crash, more commit requests in front of the group "
        "heartbeat.",
        kind=Seconds,
    )
    kafka_passthrough: tuple[tuple[str, str], ...] = _setting(
        _kafka_security.PREFIX + "<NAME>",
        (),
        "Any other librdkafka property of every Kafka client: <NAME> lower-cased, '_' read as "
        "'.' and '__' as '_' (WM_KAFKA_CONFIG_CLIENT_RACK=a sets client.rack=a). One variable "
        "per property; see docs/kafka-security.md.",
        kind=tuple[tuple[str, str], ...],
    )

    def topic(self, suffix: str) -> str:
        """The full name of the catalogue topic ``suffix`` (``schemas.topics.INGEST``, ...)."""
        return _topics.name(self.topic_prefix, suffix)

    def group(self, suffix: str) -> str:
        """The consumer group id ``suffix`` (``"agents"``, ...) under this deployment's prefix."""
        return self.topic_prefix + suffix

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers to connect to."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def local_kafka(self) -> bool:
        """True when the stack runs its own broker."""
        return not self.kafka_bootstrap

    @property
    def local_postgres(self) -> bool:
        """True when the stack runs its own PostgreSQL cluster."""
        return not self.database_url

    @property
    def dsn(self) -> str:
        """PostgreSQL URL to connect to."""
        return (
            self.database_url
            or f"postgresql://webhookmaster@127.0.0.1:{self.pg_port}/webhookmaster"
        )

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """The five retry tiers' delays in seconds, from ``retry_ladder``."""
        return _ladder.parse_delays(self.retry_ladder)

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks of ``allowed_cidrs``."""
        return tuple(
            ipaddress.ip_network(part, strict=False) for part in _parts(self.allowed_cidrs)
        )

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The API keys of ``api_keys`` (blanks dropped)."""
        return tuple(_parts(self.api_keys))


# WM_* names that are not settings but are read elsewhere: WM_TEST_* by tests/support/env.py
# (the test stack's ports and state dir), WM_FUZZ_MAX_EXAMPLES by
# tests/ingest_gateway/test_api_fuzz.py.
OTHER_PREFIXES = ("WM_TEST_", _kafka_security.PREFIX)
OTHER_NAMES = frozenset({"WM_FUZZ_MAX_EXAMPLES"})


class SettingsError(ValueError):
    """A WM_* variable holds a bad value; the message starts with the variable's name."""


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _fields() -> tuple[dataclasses.Field[Any], ...]:
    """Every setting's field: the runtime's, then the local stack's."""
    stack = dataclasses.fields(StackSettings)
    return tuple(f for f in dataclasses.fields(Settings) if f not in stack) + stack


def env_names() -> frozenset[str]:
    """Every setting's variable name."""
    return frozenset(f.metadata["env"] for f in _fields())


def parse(f: dataclasses.Field[Any], raw: Any) -> Any:
    """``raw`` (the variable's text, or a value) as the field's type; :class:`SettingsError`
    naming the variable when it is not valid."""
    try:
        return _adapter(f.metadata["kind"]).validate_python(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        what = str(error["msg"]).removeprefix("Value error, ").removeprefix("Input ")
        shown = "" if f.metadata["secret"] else f" (got {raw!r})"
        raise SettingsError(f"{f.metadata['env']}: {what}{shown}") from None


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default: the process environment), each variable parsed into its
    field's type, then ``overrides`` (values, not parsed)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in _fields():
        name = f.metadata["env"]
        if name in env:
            values[f.name] = parse(f, env[name])
    try:
        values["kafka_passthrough"] = _kafka_security.passthrough(env)
        values.update(overrides)
        settings = Settings(**values)
        _kafka_security.check(settings)
    except _kafka_security.KafkaConfigError as exc:
        raise SettingsError(str(exc)) from None
    return settings


def unknown_names(env: Mapping[str, str] | None = None) -> list[str]:
    """``WM_*`` names in ``env`` that are no setting (nor a known test variable), sorted."""
    env = os.environ if env is None else env
    known = env_names() | OTHER_NAMES
    return sorted(
        name
        for name in env
        if name.startswith("WM_") and name not in known and not name.startswith(OTHER_PREFIXES)
    )


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env = {
        f.metadata["env"]: str(getattr(settings, f.name))
        for f in _fields()
        if f.name != "kafka_passthrough"  # a variable per property, below
    }
    env.update(_kafka_security.passthrough_env(settings.kafka_passthrough))
    return env


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


MASK = "****"


def effective(settings: Settings) -> list[tuple[str, str]]:
    """(variable, value) of every setting as ``settings`` holds it, secrets masked."""
    rows = []
    for f in _fields():
        if f.name == "kafka_passthrough":
            rows.append((f.metadata["env"], ""))  # a variable per property, at the end
            continue
        value = _text(getattr(settings, f.name))
        if f.metadata["secret"] and f.name.endswith("keys") and _parts(value):
            count = len(_parts(value))
            value = f"{MASK} ({count} key{'s' if count > 1 else ''})"
        elif f.metadata["secret"] and value:
            value = MASK
        rows.append((f.metadata["env"], value))
    for name, value in _kafka_security.passthrough_env(settings.kafka_passthrough).items():
        rows.append((name, MASK if _kafka_security.is_secret(name) else value))
    return rows


def _table(fields: list[dataclasses.Field[Any]]) -> list[str]:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields:
        default = f.default
        if f.name == "state_dir":
            default = "./.wm-state/dev"
        elif f.name == "cache_dir":
            default = "~/.cache/webhookmaster"
        shown = f"`{default}`" if default not in ("", ()) else "(empty)"
        rows.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return rows


def markdown_table() -> str:
    """The tables of docs/configuration.md: runtime settings, then the local stack's."""
    local = list(dataclasses.fields(StackSettings))
    runtime = [f for f in _fields() if f not in local]
    return "\n".join(
        [
            *_table(runtime),
            "",
            "Local development stack (`webhookmaster stack`, the tests):",
            "",
            *_table(local),
        ]
    )
