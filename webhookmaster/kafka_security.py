"""Kafka client security and pass-through properties: the librdkafka properties that the
``WM_KAFKA_*`` security settings, the properties file (``WM_KAFKA_CONFIG_FILE``) and the
``WM_KAFKA_CONFIG_<NAME>`` variables stand for, and their check when the settings load.

``WM_KAFKA_CONFIG_<NAME>`` names a librdkafka property: ``<NAME>`` lower-cased, each ``_``
read as ``.`` and each ``__`` as ``_`` (``WM_KAFKA_CONFIG_CLIENT_RACK`` → ``client.rack``,
``WM_KAFKA_CONFIG_LOG__LEVEL`` → ``log_level``). Later sources win: the properties file, then
the variables. A property that a named setting covers may come from one source only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException, Producer

if TYPE_CHECKING:
    from webhookmaster.settings import Settings

PREFIX = "WM_KAFKA_CONFIG_"
FILE_ENV = "WM_KAFKA_CONFIG_FILE"
_NAME = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")

# Properties WebhookMaster sets itself: its delivery guarantees depend on them.
RESERVED = {
    "bootstrap.servers": "set WM_KAFKA_BOOTSTRAP instead",
    "group.id": "WebhookMaster names its consumer groups (WM_TOPIC_PREFIX)",
    "enable.auto.commit": "components commit offsets once their work is durable",
    "enable.auto.offset.store": "components store offsets once their work is durable",
    "acks": "producers always wait for acks=all",
    "enable.idempotence": "producers are always idempotent",
}

# property → the named setting's variable that sets it
NAMED_ENV = {
    "security.protocol": "WM_KAFKA_SECURITY_PROTOCOL",
    "ssl.ca.location": "WM_KAFKA_SSL_CA_FILE",
    "ssl.certificate.location": "WM_KAFKA_SSL_CERT_FILE",
    "ssl.key.location": "WM_KAFKA_SSL_KEY_FILE",
    "ssl.key.password": "WM_KAFKA_SSL_KEY_PASSWORD",
    "ssl.endpoint.identification.algorithm": "WM_KAFKA_SSL_VERIFY_HOSTNAME",
    "sasl.mechanism": "WM_KAFKA_SASL_MECHANISM",
    "sasl.username": "WM_KAFKA_SASL_USERNAME",
    "sasl.password": "WM_KAFKA_SASL_PASSWORD",
    "sasl.oauthbearer.method": "WM_KAFKA_OAUTH_TOKEN_URL",
    "sasl.oauthbearer.token.endpoint.url": "WM_KAFKA_OAUTH_TOKEN_URL",
    "sasl.oauthbearer.client.id": "WM_KAFKA_OAUTH_CLIENT_ID",
    "sasl.oauthbearer.client.secret": "WM_KAFKA_OAUTH_CLIENT_SECRET",
    "sasl.oauthbearer.scope": "WM_KAFKA_OAUTH_SCOPE",
}
ALIASES = {"sasl.mechanisms": "sasl.mechanism"}
_SECRET_WORDS = ("password", "secret", "pem", "oauthbearer.config", "credentials")


class KafkaConfigError(ValueError):
    """A Kafka client setting is wrong; the message starts with the variable's name."""


def property_name(env_name: str) -> str:
    """The librdkafka property a ``WM_KAFKA_CONFIG_<NAME>`` variable sets."""
    raw = env_name[len(PREFIX) :].lower()
    name = raw.replace("__", "\0").replace("_", ".").replace("\0", "_")
    if not _NAME.fullmatch(name):
        raise KafkaConfigError(
            f"{env_name}: not a librdkafka property name (write client.rack as "
            f"{PREFIX}CLIENT_RACK, log_level as {PREFIX}LOG__LEVEL)"
        )
    return name


def env_name(prop: str) -> str:
    """The ``WM_KAFKA_CONFIG_<NAME>`` variable that sets librdkafka property ``prop``."""
    return PREFIX + prop.replace("_", "__").replace(".", "_").upper()


def is_secret(name: str) -> bool:
    """True when a property (or its variable) holds a secret by its name."""
    low = name.lower().replace("_", ".")
    return any(word in low for word in _SECRET_WORDS)


def _not_reserved(prop: str, where: str) -> None:
    if prop in RESERVED:
        raise KafkaConfigError(f"{where}: {prop} cannot be set here: {RESERVED[prop]}")


def passthrough(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``(property, value)`` pairs of the ``WM_KAFKA_CONFIG_<NAME>`` variables in ``env``."""
    found: dict[str, str] = {}
    for name, value in env.items():
        if name.startswith(PREFIX) and name != FILE_ENV:
            prop = property_name(name)
            _not_reserved(prop, name)
            found[prop] = value
    return tuple(sorted(found.items()))


def passthrough_env(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The variables that reproduce ``pairs`` (for a child process, or to show them)."""
    return {env_name(prop): value for prop, value in pairs}


def read_properties(path: str) -> dict[str, str]:
    """The ``name=value`` lines of a librdkafka properties file (``#``/``!`` comments)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KafkaConfigError(f"{FILE_ENV}: cannot read {path}: {exc}") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        prop, sep, value = line.partition("=")
        prop = prop.strip()
        if not sep or not _NAME.fullmatch(prop):
            raise KafkaConfigError(f"{FILE_ENV}: {path} line {number}: expected name=value")
        _not_reserved(prop, f"{FILE_ENV}: {path} line {number}")
        found[ALIASES.get(prop, prop)] = value.strip()
    return found


def _secret(value: str, path: str) -> str:
    if path:
        return Path(path).read_text().rstrip("\r\n")
    return value


def named(settings: Settings) -> dict[str, str]:
    """The properties the named security settings stand for (only those that are set)."""
    s = settings
    props: dict[str, str] = {}
    pairs = [
        ("security.protocol", s.kafka_security_protocol),
        ("ssl.ca.location", s.kafka_ssl_ca_file),
        ("ssl.certificate.location", s.kafka_ssl_cert_file),
        ("ssl.key.location", s.kafka_ssl_key_file),
        ("ssl.key.password", _secret(s.kafka_ssl_key_password, s.kafka_ssl_key_password_file)),
        ("ssl.endpoint.identification.algorithm", "" if s.kafka_ssl_verify_hostname else "none"),
        ("sasl.mechanism", s.kafka_sasl_mechanism),
        ("sasl.username", s.kafka_sasl_username),
        ("sasl.password", _secret(s.kafka_sasl_password, s.kafka_sasl_password_file)),
        ("sasl.oauthbearer.method", "oidc" if s.kafka_oauth_token_url else ""),
        ("sasl.oauthbearer.token.endpoint.url", s.kafka_oauth_token_url),
        ("sasl.oauthbearer.client.id", s.kafka_oauth_client_id),
        (
            "sasl.oauthbearer.client.secret",
            _secret(s.kafka_oauth_client_secret, s.kafka_oauth_client_secret_file),
        ),
        ("sasl.oauthbearer.scope", s.kafka_oauth_scope),
    ]
    for prop, value in pairs:
        if value:
            props[prop] = value
    return props


def _extra(settings: Settings) -> dict[str, str]:
    """The properties file's properties, then the variables' (which win)."""
    props = read_properties(settings.kafka_config_file) if settings.kafka_config_file else {}
    for prop, value in settings.kafka_passthrough:
        props[ALIASES.get(prop, prop)] = value
    return props


def properties(settings: Settings) -> dict[str, str]:
    """Every security and pass-through property for a client (secrets read from their files)."""
    return {**named(settings), **_extra(settings)}


def _extra_source(settings: Settings, prop: str) -> str:
    """The variable that set ``prop`` among the pass-through ones, else the properties file."""
    for given, _ in settings.kafka_passthrough:
        if ALIASES.get(given, given) == ALIASES.get(prop, prop):
            return env_name(given)
    return FILE_ENV


def _source(settings: Settings, prop: str) -> str:
    """The variable that set ``prop`` (for an error message)."""
    canonical = ALIASES.get(prop, prop)
    if canonical in NAMED_ENV and canonical in named(settings):
        if canonical not in _extra(settings):
            return NAMED_ENV[canonical]
    return _extra_source(settings, prop)


def _check_files(settings: Settings) -> None:
    s = settings
    secrets = [
        ("WM_KAFKA_SSL_KEY_PASSWORD", s.kafka_ssl_key_password, s.kafka_ssl_key_password_file),
        ("WM_KAFKA_SASL_PASSWORD", s.kafka_sasl_password, s.kafka_sasl_password_file),
        (
            "WM_KAFKA_OAUTH_CLIENT_SECRET",
            s.kafka_oauth_client_secret,
            s.kafka_oauth_client_secret_file,
        ),
    ]
    for env, value, path in secrets:
        if value and path:
            raise KafkaConfigError(f"{env}_FILE: set {env} or {env}_FILE, not both")
        if path:
            try:
                if not _secret("", path):
                    raise KafkaConfigError(f"{env}_FILE: {path} is empty")
            except (OSError, UnicodeDecodeError) as exc:
                raise KafkaConfigError(f"{env}_FILE: cannot read {path}: {exc}") from None
    for env, path in [
        ("WM_KAFKA_SSL_CA_FILE", s.kafka_ssl_ca_file),
        ("WM_KAFKA_SSL_CERT_FILE", s.kafka_ssl_cert_file),
        ("WM_KAFKA_SSL_KEY_FILE", s.kafka_ssl_key_file),
    ]:
        if path and not Path(path).is_file():
            raise KafkaConfigError(f"{env}: no such file: {path}")


def _check_combination(settings: Settings, props: dict[str, str]) -> None:
    s = settings
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    tls, sasl = protocol in ("SSL", "SASL_SSL"), protocol.startswith("SASL_")
    need = "WM_KAFKA_SECURITY_PROTOCOL"
    tls_set = [
        ("WM_KAFKA_SSL_CA_FILE", s.kafka_ssl_ca_file),
        ("WM_KAFKA_SSL_CERT_FILE", s.kafka_ssl_cert_file),
        ("WM_KAFKA_SSL_KEY_FILE", s.kafka_ssl_key_file),
        ("WM_KAFKA_SSL_KEY_PASSWORD", s.kafka_ssl_key_password or s.kafka_ssl_key_password_file),
        ("WM_KAFKA_SSL_VERIFY_HOSTNAME", not s.kafka_ssl_verify_hostname),
    ]
    for env, value in tls_set:
        if value and not tls:
            raise KafkaConfigError(f"{env}: needs {need}=SSL or SASL_SSL (it is {protocol})")
    if bool(s.kafka_ssl_cert_file) != bool(s.kafka_ssl_key_file):
        missing = "WM_KAFKA_SSL_KEY_FILE" if s.kafka_ssl_cert_file else "WM_KAFKA_SSL_CERT_FILE"
        raise KafkaConfigError(f"{missing}: needed with the other half of the client certificate")
    sasl_set = [
        ("WM_KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
        ("WM_KAFKA_SASL_USERNAME", s.kafka_sasl_username),
        ("WM_KAFKA_SASL_PASSWORD", s.kafka_sasl_password or s.kafka_sasl_password_file),
        ("WM_KAFKA_OAUTH_TOKEN_URL", s.kafka_oauth_token_url),
    ]
    for env, value in sasl_set:
        if value and not sasl:
            raise KafkaConfigError(
                f"{env}: needs {need}=SASL_SSL or SASL_PLAINTEXT (it is {protocol})"
            )
    mechanism = props.get("sasl.mechanism", "").upper()
    if sasl and not mechanism:
        raise KafkaConfigError(f"WM_KAFKA_SASL_MECHANISM: needed with {protocol}")
    if s.kafka_sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        if "sasl.username" not in props:
            raise KafkaConfigError(f"WM_KAFKA_SASL_USERNAME: needed with {mechanism}")
        if "sasl.password" not in props:
            raise KafkaConfigError(
                f"WM_KAFKA_SASL_PASSWORD: needed with {mechanism} (or WM_KAFKA_SASL_PASSWORD_FILE)"
            )
    oauth = [
        ("WM_KAFKA_OAUTH_TOKEN_URL", s.kafka_oauth_token_url),
        ("WM_KAFKA_OAUTH_CLIENT_ID", s.kafka_oauth_client_id),
        (
            "WM_KAFKA_OAUTH_CLIENT_SECRET",
            s.kafka_oauth_client_secret or s.kafka_oauth_client_secret_file,
        ),
    ]
    if s.kafka_sasl_mechanism == "OAUTHBEARER":
        for env, value in oauth:
            if not value:
                raise KafkaConfigError(f"{env}: needed with OAUTHBEARER (OIDC client credentials)")
    else:
        for env, value in [*oauth, ("WM_KAFKA_OAUTH_SCOPE", s.kafka_oauth_scope)]:
            if value:
                raise KafkaConfigError(f"{env}: needs WM_KAFKA_SASL_MECHANISM=OAUTHBEARER")


def _check_with_librdkafka(settings: Settings, props: dict[str, str]) -> None:
    """Let librdkafka read every property (names, values, the TLS files) in a client that
    never connects: no bootstrap servers, no SASL login, no token fetch."""
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    probe: dict[str, str | int] = {
        k: v
        for k, v in props.items()
        if k not in ("sasl.mechanism", "sasl.mechanisms", "sasl.oauthbearer.method")
        and not k.startswith("sasl.kerberos.")
    }
    probe["security.protocol"] = "SSL" if protocol in ("SSL", "SASL_SSL") else "PLAINTEXT"
    probe["log_level"] = 0
    try:
        Producer(probe).flush(0)
    except KafkaException as exc:
        text = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        mentioned = [p for p in sorted(props, key=len, reverse=True) if p in text]
        env = _source(settings, mentioned[0]) if mentioned else _first_source(settings)
        raise KafkaConfigError(f"{env}: librdkafka rejects it: {text}") from None


def _first_source(settings: Settings) -> str:
    if settings.kafka_passthrough:
        return env_name(settings.kafka_passthrough[0][0])
    return FILE_ENV if settings.kafka_config_file else "WM_KAFKA_SECURITY_PROTOCOL"


def check(settings: Settings) -> None:
    """Raise :class:`KafkaConfigError` naming the variable when the Kafka client settings do not
    make a usable client configuration."""
    for prop, _ in settings.kafka_passthrough:
        _not_reserved(prop, env_name(prop))
    _check_files(settings)
    named_props, extra = named(settings), _extra(settings)
    for prop in extra:
        if prop in NAMED_ENV and prop in named_props:
            raise KafkaConfigError(
                f"{_extra_source(settings, prop)}: sets {prop}, which {NAMED_ENV[prop]} "
                "sets already; keep one"
            )
    props = {**named_props, **extra}
    _check_combination(settings, props)
    if props:
        _check_with_librdkafka(settings, props)
