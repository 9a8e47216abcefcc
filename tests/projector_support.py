"""Helpers for the status projector's tests: record factories, producing them, running the
projector as a subprocess, and bounded polls on PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from confluent_kafka import Producer

from schemas import records
from schemas.topics import ATTEMPTS, INGEST
from tests.conftest import clean_env
from webhookmaster.kafka_clients import client_config
from webhookmaster.settings import Settings, to_env

SUB_URL = "https://receiver.example/hooks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def iso(moment: datetime) -> str:
    return records.iso(moment)


def now() -> datetime:
    return datetime.now(UTC)


def subscription(
    sub_id: str, url: str = SUB_URL, event_types: list[str] | None = None, is_active: bool = True
) -> dict[str, Any]:
    at = iso(now())
    return {
        "id": sub_id,
        "target_url": url,
        "secret_key": "whsec_test",
        "event_types": event_types or [],
        "is_active": is_active,
        "created_at": at,
        "updated_at": at,
    }


def ingest(
    webhook_id: str,
    sub_id: str | None,
    received: datetime,
    *,
    event_type: str = "order.created",
    payload: Any = None,
    attempt: int = 0,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "webhook_id": webhook_id,
        "subscription_id": sub_id,
        "event_type": event_type,
        "payload": {"n": webhook_id} if payload is None else payload,
        "received_at": iso(received),
        "metadata": {"source": "test"},
    }
    if attempt:
        record["attempt"] = attempt
        record["due_at"] = iso(due_at) if due_at else None
    return record


def attempt(
    webhook_id: str,
    sub_id: str,
    received: datetime,
    number: int,
    outcome: str,
    *,
    status_code: int | None = None,
    error: str | None = None,
    started: datetime | None = None,
    next_at: datetime | None = None,
    event_type: str = "order.created",
) -> dict[str, Any]:
    started = started or received + timedelta(seconds=number)
    if status_code is None:
        status_code = 200 if outcome == "delivered" else 500
    if error is None and outcome != "delivered":
        error = f"HTTP {status_code}"
    if next_at is None and outcome == "retrying":
        next_at = started + timedelta(seconds=10 * number)
    return {
        "webhook_id": webhook_id,
        "subscription_id": sub_id,
        "event_type": event_type,
        "target_url": SUB_URL,
        "attempt_number": number,
        "started_at": iso(started),
        "duration_ms": 12.5,
        "status_code": status_code,
        "error": error,
        "response_excerpt": "ok" if outcome == "delivered" else "boom",
        "outcome": outcome,
        "next_attempt_at": iso(next_at) if next_at else None,
        "received_at": iso(received),
    }


def dead_letter(
    webhook_id: str | None,
    sub_id: str | None,
    reason: str,
    record: dict[str, Any] | None = None,
    raw: str | None = None,
    failed: datetime | None = None,
) -> dict[str, Any]:
    return {
        "reason": reason,
        "failed_at": iso(failed or now()),
        "webhook_id": webhook_id,
        "subscription_id": sub_id,
        "record": record,
        "raw": raw,
        "source": {"topic": "x.ingest", "partition": 0, "offset": 1},
    }


Item = tuple[str, bytes | str | None, Any]  # topic suffix, key, value (dict, bytes or None)


def produce(settings: Settings, items: Iterable[Item]) -> int:
    """Produce ``items`` (acks=all) and wait for every acknowledgement; returns the count."""
    producer = Producer(
        client_config(
            settings,
            {
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": True,
            },
        )
    )
    count = 0
    for suffix, key, value in items:
        if isinstance(value, dict):
            value = records.dumps(value)
        while True:
            try:
                producer.produce(settings.topic(suffix), value, key)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    assert producer.flush(30) == 0, "records not acknowledged"
    return count


def webhook_items(
    webhook_id: str, sub_id: str, received: datetime, outcomes: Iterable[str]
) -> list[Item]:
    """The ingest record and one attempt event per outcome of one webhook."""
    items: list[Item] = [(INGEST, sub_id, ingest(webhook_id, sub_id, received))]
    for number, outcome in enumerate(outcomes, start=1):
        items.append((ATTEMPTS, webhook_id, attempt(webhook_id, sub_id, received, number, outcome)))
    return items


class ProjectorProcess:
    """``webhookmaster projector`` in a child process, with its own health port and log."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        full_env = clean_env(**to_env(settings))
        full_env.update({"WM_PROJECTOR_PORT": str(self.port), "WM_PROJECTOR_BATCH_WAIT": "0.05"})
        full_env.update(env)
        self._log = open(log_path, "ab")  # closed in stop() / kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhookmaster", "projector"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, OSError):
            return 0, ""

    def ready(self) -> bool:
        return self._get("/readyz")[0] == 200

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.proc.poll() is None, f"projector exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"projector not ready:\n{self.log()}"
            time.sleep(0.1)

    def wait_not_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready():
            assert time.monotonic() < deadline, f"projector still ready:\n{self.log()}"
            time.sleep(0.1)

    def metric(self, name: str) -> float:
        """Sum of every sample of metric ``name`` (all labels)."""
        status, text = self._get("/metrics")
        assert status == 200
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, value = line.rsplit(" ", 1)
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"projector ignored SIGTERM:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode


async def until(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Await ``check()`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
        await asyncio.sleep(interval)


async def count(conn: asyncpg.Connection, table: str, where: str = "true") -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}")


async def dump(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of the projector's tables, in a stable order (for replay comparisons)."""
    return {
        "webhooks": [
            dict(r) for r in await conn.fetch("SELECT * FROM webhooks ORDER BY id, created_at")
        ],
        "delivery_attempts": [
            dict(r)
            for r in await conn.fetch(
                "SELECT * FROM delivery_attempts ORDER BY webhook_id, attempt_number"
            )
        ],
        "subscriptions": [
            dict(r) for r in await conn.fetch("SELECT * FROM subscriptions ORDER BY id")
        ],
        "dead_letters": [
            dict(r)
            for r in await conn.fetch("SELECT * FROM dead_letters ORDER BY dl_partition, dl_offset")
        ],
    }


def new_id() -> str:
    return str(uuid.uuid4())
