"""The gateway's per-application state: Kafka producer, subscription table, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from ingest_gateway.auth import parse_keys
from ingest_gateway.errors import not_found, unavailable
from ingest_gateway.idempotency import Seen
from ingest_gateway.list_share import ListShare
from schemas.topics import INGEST, SUBSCRIPTIONS
from webhookmaster.kafka_clients import AsyncProducer
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import Subscription, SubscriptionTable


@dataclass
class Gateway:
    """What handlers need; the producer and the table exist while the app runs."""

    settings: Settings
    ingest_topic: str
    subscriptions_topic: str
    api_keys: tuple[bytes, ...]
    max_body_bytes: int
    # List pages' share of the event loop while ingest is busy (ingest_gateway/list_share.py).
    list_share: ListShare
    producer: AsyncProducer = field(init=False)
    table: SubscriptionTable = field(init=False)
    kafka_ok: bool = False
    # Set when the last probe failed (not before the first one): writes then fail fast.
    kafka_down: bool = False
    # Set while ready: table loaded and the last Kafka probe answered.
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    # More readiness conditions (the status API may add its own).
    ready_checks: list[Callable[[], bool]] = field(default_factory=list)
    # Per-subscription locks: one read-modify-write at a time per id in this process.
    write_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Ids accepted for an Idempotency-Key or event id (ingest_gateway/idempotency.py).
    replays: Seen = field(default_factory=Seen)

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway:
        return cls(
            settings=settings,
            ingest_topic=settings.topic(INGEST),
            subscriptions_topic=settings.topic(SUBSCRIPTIONS),
            api_keys=parse_keys(settings.api_keys),
            max_body_bytes=settings.max_body_bytes,
            list_share=ListShare(settings.list_share),
        )

    def ready(self) -> bool:
        """Producer connected, table loaded, and every extra check true."""
        return self.kafka_ok and self.table_loaded() and all(check() for check in self.ready_checks)

    def table_loaded(self) -> bool:
        table = getattr(self, "table", None)
        return table is not None and table.loaded

    def update_ready(self) -> None:
        if self.ready():
            self.ready_event.set()
        else:
            self.ready_event.clear()

    def loaded_table(self) -> SubscriptionTable:
        """The table, or 503 while it is still loading."""
        if not self.table_loaded():
            raise unavailable("the subscription table is still loading", error="not_ready")
        return self.table

    def subscription(self, sub_id: str) -> Subscription:
        """The subscription ``sub_id``, or 404."""
        sub = self.loaded_table().get(sub_id)
        if sub is None:
            raise not_found(f"no subscription {sub_id!r}")
        return sub

    def write_lock(self, sub_id: str) -> asyncio.Lock:
        lock = self.write_locks.get(sub_id)
        if lock is None:
            lock = self.write_locks[sub_id] = asyncio.Lock()
        return lock


GATEWAY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]
