"""A copy of a marked first attempt (an Idempotency-Key or event id sent again, which the agents
drop) adds no status row: the webhook keeps one row, with its real progress."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
from confluent_kafka import Producer

from schemas import records
from schemas.topics import ATTEMPTS, INGEST, SUBSCRIPTIONS
from status_projector.main import serve as serve_projector
from tests.support.records import attempt, new_id, now, produce, subscription
from tests.support.waiting import eventually
from webhookmaster.kafka_clients import PARTITIONER, client_config
from webhookmaster.settings import Settings


def produce_webhook(settings: Settings, webhook: records.Webhook, marked: bool) -> None:
    headers = [*webhook.headers(), records.IDEMPOTENT] if marked else webhook.headers()
    producer = Producer(client_config(settings, {"acks": "all", "partitioner": PARTITIONER}))
    producer.produce(settings.topic(INGEST), webhook.body, webhook.subscription_id, headers=headers)
    assert producer.flush(30) == 0


async def test_a_marked_copy_adds_no_row_an_unmarked_one_does(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    sub = new_id()
    produce(wm_settings, [(SUBSCRIPTIONS, sub, subscription(sub))])
    first = now() - timedelta(minutes=5)
    marked_id, plain_id = new_id(), new_id()
    for webhook_id, marked in ((marked_id, True), (plain_id, False)):
        original = records.Webhook(webhook_id, sub, "order.created", b"{}", records.iso(first))
        produce_webhook(wm_settings, original, marked)
        produce(
            wm_settings,
            [(ATTEMPTS, webhook_id, attempt(webhook_id, sub, first, 1, "delivered"))],
        )
        later = original.replace(received_at=records.iso(first + timedelta(minutes=1)))
        produce_webhook(wm_settings, later, marked)
    stop = asyncio.Event()
    projector = asyncio.create_task(serve_projector(wm_settings, stop, port=0))
    try:

        async def rows(webhook_id: str) -> list[str]:
            found = await db.fetch(
                "SELECT status FROM webhooks WHERE id = $1 ORDER BY created_at", webhook_id
            )
            return [r["status"] for r in found]

        async def projected() -> bool:
            # the copies follow their originals on the same partition: both are projected
            plain = await rows(plain_id)
            return plain == ["DELIVERED", "PENDING"] and "DELIVERED" in await rows(marked_id)

        assert await eventually(projected, timeout=60)
    finally:
        stop.set()
        assert await asyncio.wait_for(projector, 60) == 0
    assert await rows(marked_id) == ["DELIVERED"]  # unmarked (plain_id): never de-duplicated
