"""Helpers for tests that drive the delivery pipeline through real topics: subscriptions and
ingest records produced to Kafka, agents and schedulers run in-process, outcomes read back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from confluent_kafka import Message, Producer

from delivery_agents.main import serve as serve_agent
from retry_scheduler.main import serve as serve_scheduler
from schemas import records
from schemas.topics import INGEST, SUBSCRIPTIONS
from tests.kafka_helpers import consume, webhook_view
from webhookmaster import signing
from webhookmaster.kafka_clients import client_config
from webhookmaster.settings import Settings


def producer(settings: Settings) -> Producer:
    return Producer(client_config(settings, {"acks": "all", "linger.ms": 5}))


def create_subscription(
    settings: Settings,
    target_url: str,
    *,
    secret: str | None = None,
    event_types: list[str] | None = None,
    active: bool = True,
    rate_limit: float | None = None,
) -> str:
    """Produce a subscription record (as the gateway would) and return its id."""
    sub_id = str(uuid.uuid4())
    now = records.now_iso()
    value = {
        "id": sub_id,
        "target_url": target_url,
        "secret_key": signing.new_secret() if secret is None else secret,
        "event_types": event_types or [],
        "is_active": active,
        "created_at": now,
        "updated_at": now,
        "rate_limit": rate_limit,
    }
    p = producer(settings)
    p.produce(settings.topic(SUBSCRIPTIONS), orjson.dumps(value), sub_id)
    assert p.flush(30) == 0
    return sub_id


def delete_subscription(settings: Settings, sub_id: str) -> None:
    p = producer(settings)
    p.produce(settings.topic(SUBSCRIPTIONS), None, sub_id)
    assert p.flush(30) == 0


def ingest_record(
    sub_id: str | None,
    payload: Any = None,
    event_type: str = "order.created",
    webhook_id: str | None = None,
) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id or str(uuid.uuid4()),
        "subscription_id": sub_id,
        "event_type": event_type,
        "payload": {"n": 1} if payload is None else payload,
        "received_at": records.now_iso(),
        "metadata": {"source": "test"},
    }


def produce_ingest(
    settings: Settings, *values: dict[str, Any] | bytes, partition: int | None = None
) -> None:
    p = producer(settings)
    for value in values:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        key = None
        if isinstance(value, dict):
            key = value.get("subscription_id") or value.get("webhook_id")
        kwargs = {} if partition is None else {"partition": partition}
        p.produce(settings.topic(INGEST), raw, key, **kwargs)
    assert p.flush(30) == 0


async def read(settings: Settings, suffix: str, count: int, timeout: float = 30) -> list[dict]:
    """The first ``count`` records of a topic, as JSON (webhook records as
    :func:`webhook_view`), read with a fresh group."""
    msgs: list[Message] = await asyncio.to_thread(
        consume, settings, settings.topic(suffix), count, timeout
    )
    webhooks = suffix == INGEST or suffix.startswith("retry.")
    return [webhook_view(m) if webhooks else orjson.loads(m.value()) for m in msgs]


@contextlib.asynccontextmanager
async def running(
    settings: Settings, agents: int = 1, scheduler: bool = True
) -> AsyncIterator[list[asyncio.Event]]:
    """Agents (and the scheduler) running in this event loop; stopped and awaited on exit.
    Yields each agent's stop event."""
    stops = [asyncio.Event() for _ in range(agents)]
    tasks = [asyncio.create_task(serve_agent(settings, stop, port=0)) for stop in stops]
    sched_stop = asyncio.Event()
    if scheduler:
        tasks.append(asyncio.create_task(serve_scheduler(settings, sched_stop, port=0)))
    try:
        yield stops
    finally:
        for stop in [*stops, sched_stop]:
            stop.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        for result in results:
            if isinstance(result, BaseException):
                raise result
