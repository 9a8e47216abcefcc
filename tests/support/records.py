"""Records as the components write them (subscriptions, ingest, attempts, dead letters),
produced to real topics, and the projector's tables read back from PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from confluent_kafka import Producer

from schemas import records
from schemas.topics import ATTEMPTS, INGEST
from webhookmaster.kafka_clients import PARTITIONER, client_config
from webhookmaster.settings import Settings

SUB_URL = "https://receiver.example/hooks"


def iso(moment: datetime) -> str:
    return records.iso(moment)


def now() -> datetime:
    return datetime.now(UTC)


def subscription(
    sub_id: str,
    url: str = SUB_URL,
    event_types: list[str] | None = None,
    is_active: bool = True,
    secret_key: str = "whsec_test",
) -> dict[str, Any]:
    """A subscription record as the gateway writes it to the compacted topic."""
    at = iso(now())
    return {
        "id": sub_id,
        "target_url": url,
        "secret_key": secret_key,
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


def produce(
    settings: Settings,
    items: Iterable[Item],
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> int:
    """Produce ``items`` (acks=all; to ``partition`` if given, else by key; with ``headers``)
    and wait for every acknowledgement; returns the count."""
    producer = Producer(
        client_config(
            settings,
            {
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": True,
                "partitioner": PARTITIONER,
            },
        )
    )
    where: dict[str, Any] = {} if partition is None else {"partition": partition}
    if headers is not None:
        where["headers"] = headers
    count = 0
    for suffix, key, value in items:
        if isinstance(value, dict):
            value = records.dumps(value)
        while True:
            try:
                producer.produce(settings.topic(suffix), value, key, **where)
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
