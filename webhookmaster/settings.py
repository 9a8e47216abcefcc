"""Runtime settings, read from ``WM_*`` environment variables.

Every setting is one dataclass field whose metadata names its variable and says what it does;
the README's configuration table is generated from these fields (``webhookmaster settings``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All knobs of WebhookMaster; build with :func:`load`."""

    state_dir: str = _setting(
        "WM_STATE_DIR", str(PROJECT_ROOT / ".wm-state" / "dev"),
        "Folder for the local stack: Kafka and PostgreSQL data, logs, pid files.")
    kafka_bootstrap: str = _setting(
        "WM_KAFKA_BOOTSTRAP", "",
        "Kafka bootstrap servers. Empty: the local broker the stack starts on WM_KAFKA_PORT.")
    kafka_port: int = _setting("WM_KAFKA_PORT", 29092, "Local broker's client port (127.0.0.1).")
    kafka_controller_port: int = _setting(
        "WM_KAFKA_CONTROLLER_PORT", 29093, "Local broker's KRaft controller port (127.0.0.1).")
    kafka_version: str = _setting(
        "WM_KAFKA_VERSION", "4.1.1", "Apache Kafka version the stack assembles from Maven Central.")
    kafka_heap: str = _setting("WM_KAFKA_HEAP", "-Xms256m -Xmx1g", "JVM heap flags of the broker.")
    maven_args: str = _setting(
        "WM_MAVEN_ARGS", "", "Extra arguments for the Maven call that fetches the Kafka jars.")
    cache_dir: str = _setting(
        "WM_CACHE_DIR", str(Path.home() / ".cache" / "webhookmaster"),
        "Where the assembled Kafka jars are kept between runs.")
    java: str = _setting("WM_JAVA", "java", "Java 17+ executable for the broker.")
    database_url: str = _setting(
        "WM_DATABASE_URL", "",
        "PostgreSQL URL. Empty: the local cluster the stack starts on WM_PG_PORT.")
    pg_port: int = _setting("WM_PG_PORT", 25432, "Local PostgreSQL port (127.0.0.1).")
    db_schema: str = _setting(
        "WM_DB_SCHEMA", "public", "PostgreSQL schema that holds WebhookMaster's tables.")
    topic_prefix: str = _setting(
        "WM_TOPIC_PREFIX", "webhookmaster.", "Prefix of every topic name in the catalogue.")
    topic_partitions: int = _setting(
        "WM_TOPIC_PARTITIONS", 6, "Partitions of the ingest, retry, dead-letter, attempt topics.")
    retention_ms: int = _setting(
        "WM_RETENTION_MS", 259_200_000, "Retention of every data topic (72 h).")
    log_level: str = _setting("WM_LOG_LEVEL", "INFO", "Log level of every component.")
    gateway_host: str = _setting("WM_GATEWAY_HOST", "127.0.0.1", "Gateway listen address.")
    gateway_port: int = _setting("WM_GATEWAY_PORT", 28080, "Gateway listen port.")
    uvloop: bool = _setting(
        "WM_UVLOOP", True, "Run components on uvloop (when installed) instead of asyncio's loop.")
    health_host: str = _setting(
        "WM_HEALTH_HOST", "127.0.0.1",
        "Listen address of the agent's, scheduler's and projector's health and metrics server "
        "(0.0.0.0 in containers).")
    agent_port: int = _setting(
        "WM_AGENT_PORT", 29101, "Delivery agent's health and metrics port.")
    scheduler_port: int = _setting(
        "WM_SCHEDULER_PORT", 29102, "Retry scheduler's health and metrics port.")
    projector_port: int = _setting(
        "WM_PROJECTOR_PORT", 29103, "Status projector's health and metrics port.")
    api_keys: str = _setting(
        "WM_API_KEYS", "",
        "Comma-separated API keys. Set: every /api/ route needs 'Authorization: Bearer <key>' "
        "(ingest also accepts a valid subscription signature).")
    max_body_bytes: int = _setting(
        "WM_MAX_BODY_BYTES", 1_048_576, "Largest ingest body the gateway accepts (bytes).")
    request_read_timeout_s: float = _setting(
        "WM_REQUEST_READ_TIMEOUT", 10.0,
        "Seconds a client has to send a whole request (headers and body) to the gateway; "
        "slower ones get 408 and are disconnected.")
    table_load_timeout_s: float = _setting(
        "WM_TABLE_LOAD_TIMEOUT", 60.0,
        "Seconds a process waits to load the subscription table before it gives up.")
    connect_timeout_s: float = _setting(
        "WM_CONNECT_TIMEOUT", 5.0, "Delivery connect timeout (seconds).")
    request_timeout_s: float = _setting(
        "WM_REQUEST_TIMEOUT", 15.0, "Delivery total timeout (seconds).")
    max_in_flight: int = _setting(
        "WM_MAX_IN_FLIGHT", 256, "Deliveries in flight per agent process.")
    max_in_flight_per_subscription: int = _setting(
        "WM_MAX_IN_FLIGHT_PER_SUBSCRIPTION", 32,
        "Deliveries in flight per subscription in one agent process.")
    allowed_cidrs: str = _setting(
        "WM_ALLOWED_CIDRS", "",
        "Comma-separated CIDRs that deliveries may target although they are not global "
        "(loopback, private, link-local). Empty: only global addresses.")
    retry_ladder: str = _setting(
        "WM_RETRY_LADDER", "10,30,60,300,900",
        "Delays (seconds) of the five retry tiers, in order.")
    projector_batch_size: int = _setting(
        "WM_PROJECTOR_BATCH_SIZE", 2000,
        "Most records the status projector writes to PostgreSQL in one transaction.")
    projector_batch_wait_s: float = _setting(
        "WM_PROJECTOR_BATCH_WAIT", 0.2,
        "Seconds the status projector waits for a batch to fill before it writes it.")
    retention_interval_s: float = _setting(
        "WM_RETENTION_INTERVAL", 3600.0,
        "Seconds between the status projector's retention runs (drops partitions older than "
        "WM_RETENTION_MS, creates the coming days' partitions).")
    secret_keys: str = _setting(
        "WM_SECRET_KEYS", "",
        "Comma-separated Fernet keys that encrypt subscription secrets on the subscriptions topic, "
        "newest first: the first encrypts, all decrypt ('webhookmaster secret-key' makes one). "
        "The gateway and the agents need a key; the local stack makes its own.")
    secret_keys_file: str = _setting(
        "WM_SECRET_KEYS_FILE", "",
        "File holding the Fernet keys instead, one per line, newest first (e.g. a mounted "
        "Kubernetes Secret). Set WM_SECRET_KEYS or this, not both.")
    ready_timeout_s: float = _setting(
        "WM_READY_TIMEOUT", 90.0, "Seconds the stack waits for each service to be ready.")

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
        return self.database_url or f"postgresql://webhookmaster@127.0.0.1:{self.pg_port}/webhookmaster"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)


def _convert(raw: str, kind: Any) -> Any:
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (bool, "bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``env`` (default: the process environment), then ``overrides``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        name = f.metadata["env"]
        if name in env:
            try:
                values[f.name] = _convert(env[name], f.type)
            except ValueError as exc:
                raise SettingsError(f"{name}={env[name]!r} is not a valid {f.type}") from exc
    values.update(overrides)
    return Settings(**values)


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    return {f.metadata["env"]: str(getattr(settings, f.name)) for f in dataclasses.fields(Settings)}


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if f.name == "state_dir":
            default = "./.wm-state/dev"
        elif f.name == "cache_dir":
            default = "~/.cache/webhookmaster"
        shown = f"`{default}`" if default != "" else "(empty)"
        rows.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows)


class SettingsError(ValueError):
    """A WM_* variable holds a value of the wrong kind."""
