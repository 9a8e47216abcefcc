"""Helpers for tests that drive the delivery pipeline through real topics: subscriptions and
ingest records produced to Kafka, agents and schedulers run in-process, outcomes read back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from delivery_agents.main import serve as serve_agent
from retry_scheduler.main import serve as serve_scheduler
from schemas.topics import INGEST, SUBSCRIPTIONS
from status_projector.main import serve as serve_projector
from tests.support.gateway import LiveGateway, running_gateway
from tests.support.records import Item, ingest, new_id, now, produce, subscription
from tests.support.waiting import eventually
from webhookmaster import signing
from webhookmaster.settings import Settings


def create_subscription(
    settings: Settings,
    target_url: str,
    *,
    secret: str | None = None,
    event_types: list[str] | None = None,
    active: bool = True,
    rate_limit: float | None = None,
) -> str:
    """Produce a subscription record (as the gateway would) and return its id; ``secret`` ""
    makes one without a secret, None a fresh one."""
    sub_id = new_id()
    secret_key = signing.new_secret() if secret is None else secret
    record = {**subscription(sub_id, target_url, event_types, active, secret_key)}
    record["rate_limit"] = rate_limit
    produce(settings, [(SUBSCRIPTIONS, sub_id, record)])
    return sub_id


def delete_subscription(settings: Settings, sub_id: str) -> None:
    """Produce the subscription's tombstone."""
    produce(settings, [(SUBSCRIPTIONS, sub_id, None)])


def ingest_record(
    sub_id: str | None,
    payload: Any = None,
    event_type: str = "order.created",
    webhook_id: str | None = None,
) -> dict[str, Any]:
    """An ingest record as the gateway writes it (payload ``{"n": 1}`` unless given)."""
    payload = {"n": 1} if payload is None else payload
    return ingest(webhook_id or new_id(), sub_id, now(), event_type=event_type, payload=payload)


def produce_ingest(
    settings: Settings, *values: dict[str, Any] | bytes, partition: int | None = None
) -> None:
    """Produce ingest records (dicts keyed by subscription or webhook id, or raw bytes)."""
    items: list[Item] = []
    for value in values:
        key = None
        if isinstance(value, dict):
            key = value.get("subscription_id") or value.get("webhook_id")
        items.append((INGEST, key, value))
    produce(settings, items, partition)


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


@contextlib.asynccontextmanager
async def full_pipeline(settings: Settings) -> AsyncIterator[LiveGateway]:
    """Gateway, agent, scheduler and projector running in this loop; yields the gateway."""
    stop = asyncio.Event()
    projector = asyncio.create_task(serve_projector(settings, stop, port=0))
    try:
        async with running_gateway(settings) as gateway, running(settings):
            yield gateway
    finally:
        stop.set()
        assert await asyncio.wait_for(projector, 60) == 0


async def status_of(
    gateway: LiveGateway,
    webhook_id: str,
    until: Callable[[Any], bool] = lambda body: True,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """The status API's answer once it is 200 and ``until(body)`` holds (bounded)."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        reply = await gateway.call("GET", f"/api/status/{webhook_id}/")
        if reply.status == 200 and until(reply.json):
            found.update(reply.json)
            return True
        return False

    assert await eventually(check, timeout=timeout), f"status of {webhook_id} never got there"
    return found
