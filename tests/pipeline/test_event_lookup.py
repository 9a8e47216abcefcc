"""``GET /api/events/{event_id}/`` on the real pipeline: a gateway fan-out found by the id the
gateway answered, and a fan-out record produced straight to Kafka found by its producer's own
id (the agent expands it, the projector records the event id of each webhook)."""

from __future__ import annotations

import orjson

from schemas import records
from tests.support.gateway import LiveGateway
from tests.support.pipeline import full_pipeline, ingest_record, produce_ingest
from tests.support.receiver import Receiver
from tests.support.waiting import eventually
from webhookmaster.settings import Settings

WAIT = 60.0


async def event_when(gateway: LiveGateway, event_id: str, count: int) -> dict:
    """The event's view once it lists ``count`` webhooks, all DELIVERED (bounded)."""
    found: dict = {}

    async def check() -> bool:
        reply = await gateway.call("GET", f"/api/events/{event_id}/")
        if reply.status != 200:
            return False
        found.update(reply.json)
        hooks = reply.json["webhooks"]
        return len(hooks) == count and all(h["status"] == "DELIVERED" for h in hooks)

    assert await eventually(check, timeout=WAIT), f"event {event_id}: {found}"
    return found


async def test_a_gateway_fan_out_is_found_by_its_event_id(settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            a = await gateway.create_subscription(target_url=receiver.url("/a"))
            b = await gateway.create_subscription(
                target_url=receiver.url("/b"), event_types=["order.created"]
            )
            await gateway.create_subscription(  # not this event type: not in the event
                target_url=receiver.url("/c"), event_types=["other"]
            )
            one = await gateway.ingest(a, b'{"single": true}', event_type="order.created")
            assert one.status == 202
            reply = await gateway.call(
                "POST",
                "/api/events/",
                data=orjson.dumps({"event_type": "order.created", "payload": {"n": 1}}),
                headers={"Content-Type": "application/json"},
            )
            assert reply.status == 202, reply.body
            event_id = reply.json["event_id"]
            event = await event_when(gateway, event_id, 2)
            missing = await gateway.call("GET", "/api/events/no-such-event/")
            single = await gateway.call("GET", f"/api/events/{one.json['id']}/")
    finally:
        await receiver.stop()
    assert event["event_id"] == event_id and event["event_type"] == "order.created"
    assert event["created_at"].endswith("Z")
    assert sorted((h["id"], h["subscription_id"]) for h in event["webhooks"]) == sorted(
        (records.derived_id(event_id, sub["id"]), sub["id"]) for sub in (a, b)
    )
    assert missing.status == 404 and missing.json["error"] == "not_found"
    assert single.status == 404  # a webhook ingested for one subscription is no event


async def test_a_kafka_fan_out_is_found_by_the_producers_own_id(settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            subs = [
                await gateway.create_subscription(target_url=receiver.url(f"/{n}"), secret_key="s")
                for n in range(3)
            ]
            producer_id = "orders-2026-000042"
            produce_ingest(
                settings,
                ingest_record(None, {"order": 42}, "order.shipped", webhook_id=producer_id),
            )
            event = await event_when(gateway, producer_id, 3)
    finally:
        await receiver.stop()
    assert event["event_type"] == "order.shipped"
    assert {h["id"] for h in event["webhooks"]} == {
        records.derived_id(producer_id, sub["id"]) for sub in subs
    }
    delivered = {h.headers["webhook-id"] for h in receiver.hits}
    assert delivered == {h["id"] for h in event["webhooks"]}
