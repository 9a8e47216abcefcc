"""Bring the whole local stack up, down, or report on it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devstack import kafka_broker, postgres_server, processes
from devstack.errors import StackError
from webhookmaster import secret_box
from webhookmaster.components import COMPONENTS, Component
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import Settings, to_env


def _component_paths(settings: Settings, component: Component) -> tuple[Path, Path]:
    base = settings.state_path / "components"
    return base / f"{component.name}.log", base / f"{component.name}.pid"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def secure_state_dir(settings: Settings) -> Path:
    """The state folder, created if needed, readable by this user only (mode 0700). When root
    runs a local PostgreSQL cluster as the ``postgres`` user, that user's group may also enter
    it (0710: no listing, no reading) to reach the cluster's own 0700 folder inside."""
    path = settings.state_path
    path.mkdir(parents=True, exist_ok=True)
    group = postgres_server.server_group() if settings.local_postgres else None
    if group is not None:
        os.chown(path, -1, group)
        path.chmod(0o710)
    else:
        path.chmod(0o700)
    return path


def start_infra(settings: Settings) -> list[str]:
    """Kafka, PostgreSQL, topics and migrations; returns status lines."""
    secure_state_dir(settings)
    lines = []
    if settings.local_kafka:
        lines.append(kafka_broker.start(settings))
    elif not kafka_broker.responds(settings, timeout=10):
        raise StackError(f"Kafka at WM_KAFKA_BOOTSTRAP={settings.bootstrap} does not answer")
    created = topics_admin.ensure_topics(settings)
    lines.append(
        f"topics     {len(topics_admin.topic_specs(settings))} in catalogue, "
        f"{len(created)} created (prefix {settings.topic_prefix!r})"
    )
    if settings.local_postgres:
        lines.append(postgres_server.start(settings))
    applied = asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    lines.append(f"migrations {len(applied)} applied to schema {settings.db_schema!r}")
    return lines


def start_component(settings: Settings, component: Component) -> str:
    port = component.port(settings)
    log_file, pid_file = _component_paths(settings, component)
    if processes.read_pid(pid_file) is None:
        processes.require_free_port(port, component.name, component.port_setting)
        env = {**os.environ, **to_env(settings)}
        processes.start(component.argv(), log_file, pid_file, env=env)
    ok = processes.wait_until(
        lambda: _ready(port),
        settings.ready_timeout_s,
        alive=lambda: processes.read_pid(pid_file) is not None,
    )
    if not ok:
        processes.stop(pid_file, timeout=10)
        raise StackError(
            f"{component.name} did not become ready on 127.0.0.1:{port} (log: {log_file})",
            detail=processes.tail(log_file),
        )
    return (
        f"{component.name:<10} ready (pid {processes.read_pid(pid_file)})  "
        f"http://127.0.0.1:{port}  {component.description}"
    )


def local_defaults(settings: Settings, env: dict[str, str] | None = None) -> Settings:
    """The local stack's own choices where the user set none: deliveries may reach loopback
    (the local receivers), the API needs a key, and subscription secrets are encrypted with a
    key of the local stack's own; both keys are generated once and kept in the state folder
    (mode 0600)."""
    env = dict(os.environ) if env is None else env
    changes: dict[str, Any] = {}  # setting name -> value, for dataclasses.replace
    if not env.get("WM_SECRET_KEYS") and not env.get("WM_SECRET_KEYS_FILE"):
        secure_state_dir(settings)
        changes["secret_keys_file"] = str(
            secret_box.ensure_key_file(settings.state_path / "secret-keys")
        )
    if "WM_ALLOWED_CIDRS" not in env:
        changes["allowed_cidrs"] = "127.0.0.0/8"
    if "WM_API_KEYS" not in env:
        key_file = settings.state_path / "api-key"
        if not key_file.exists():
            settings.state_path.mkdir(parents=True, exist_ok=True)
            key_file.write_text("wm_" + secrets.token_urlsafe(24) + "\n")
            key_file.chmod(0o600)
        changes["api_keys"] = key_file.read_text().strip()
    return dataclasses.replace(settings, **changes)


def up(settings: Settings, components: bool = True) -> list[str]:
    lines = start_infra(settings)
    if components:
        settings = local_defaults(settings)
        lines += [start_component(settings, c) for c in COMPONENTS]
        lines.append(
            f"api key    {settings.api_keys.split(',')[0]}  (send 'Authorization: Bearer <key>')"
        )
        lines.append(f"deliveries may reach {settings.allowed_cidrs or 'global addresses only'}")
        lines.append(
            "secrets    encrypted with "
            f"{settings.secret_keys_file or 'WM_SECRET_KEYS'} (keep it: records written "
            "under it cannot be read without it)"
        )
    return lines


def down(settings: Settings) -> list[str]:
    """Stop the components, then PostgreSQL and Kafka: only what this stack started."""
    lines = []
    for component in reversed(COMPONENTS):
        if processes.stop(_component_paths(settings, component)[1]):
            lines.append(f"{component.name:<10} stopped")
    if settings.local_postgres and postgres_server.stop(settings):
        lines.append("postgres   stopped")
    if settings.local_kafka and kafka_broker.stop(settings):
        lines.append("kafka      stopped")
    return lines or ["nothing was running"]


def _state(pid: int | None) -> str:
    return f"running (pid {pid})" if pid else "stopped"


def status(settings: Settings) -> list[str]:
    lines = []
    if settings.local_kafka:
        pid = kafka_broker.running(settings)
        lines.append(f"kafka      {_state(pid)}  {settings.bootstrap}")
    else:
        lines.append(f"kafka      external  {settings.bootstrap}")
    if settings.local_postgres:
        pid = postgres_server.pid(settings)
        lines.append(f"postgres   {_state(pid)}  {settings.dsn}")
    else:
        lines.append("postgres   external  (WM_DATABASE_URL)")
    for component in COMPONENTS:
        pid = processes.read_pid(_component_paths(settings, component)[1])
        port = component.port(settings)
        state = f"running (pid {pid})" if pid else "stopped"
        if pid and not _ready(port):
            state += ", not ready"
        lines.append(f"{component.name:<10} {state}  http://127.0.0.1:{port}")
    return lines
