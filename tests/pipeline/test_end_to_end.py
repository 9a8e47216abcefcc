"""The whole pipeline on real parts: the gateway, an agent, the scheduler and the projector on
the real broker and PostgreSQL, a real receiver, and the status API read back."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from tests.support.gateway import LiveGateway
from tests.support.pipeline import full_pipeline, status_of
from tests.support.receiver import Receiver, Reply
from webhookmaster.settings import Settings

WAIT = 60.0


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    return dataclasses.replace(wm_settings, allowed_cidrs="127.0.0.0/8", retry_ladder="1,1,1,1,1")


async def ingest(gateway: LiveGateway, sub: dict[str, Any], payload: Any) -> str:
    reply = await gateway.ingest(sub, orjson.dumps(payload), event_type="order.created")
    assert reply.status == 202, reply.body
    return reply.json["id"]


async def test_delivered_retried_and_failed_webhooks_in_the_status_api(settings: Settings) -> None:
    receiver = await Receiver().start()
    receiver.script("/flaky", Reply(500, "first"), Reply(503, "second"))
    receiver.script("/down", then=Reply(500, "always"))
    try:
        async with full_pipeline(settings) as gateway:
            ok = await gateway.create_subscription(target_url=receiver.url("/ok"))
            flaky = await gateway.create_subscription(target_url=receiver.url("/flaky"))
            down = await gateway.create_subscription(target_url=receiver.url("/down"))
            ok_id = await ingest(gateway, ok, {"n": 1})
            flaky_id = await ingest(gateway, flaky, {"n": 2})
            down_id = await ingest(gateway, down, {"n": 3})

            done = await status_of(gateway, ok_id, lambda b: b["status"] == "DELIVERED")
            retried = await status_of(gateway, flaky_id, lambda b: b["status"] == "DELIVERED")
            failed = await status_of(
                gateway,
                down_id,
                lambda b: b["status"] == "FAILED" and len(b["delivery_attempts"]) == 6,
            )
    finally:
        await receiver.stop()

    assert done["payload"] == {"n": 1} and done["subscription"] == ok["id"]
    assert done["subscription_url"] == receiver.url("/ok")
    assert [
        (a["attempt_number"], a["is_success"], a["status_code"]) for a in done["delivery_attempts"]
    ] == [(1, True, 200)]
    assert done["retry_count"] == 0 and done["delivered_at"] is not None

    assert [
        (a["attempt_number"], a["is_success"], a["status_code"])
        for a in retried["delivery_attempts"]
    ] == [(1, False, 500), (2, False, 503), (3, True, 200)]
    assert retried["retry_count"] == 2 and retried["next_retry_at"] is None

    assert [a["attempt_number"] for a in failed["delivery_attempts"]] == [1, 2, 3, 4, 5, 6]
    assert not any(a["is_success"] for a in failed["delivery_attempts"])
    assert failed["delivered_at"] is None and failed["retry_count"] == 5


async def test_history_pages_through_a_subscription(settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/h"))
            ids = [await ingest(gateway, sub, {"i": i}) for i in range(5)]
            for webhook_id in ids:
                await status_of(gateway, webhook_id, lambda b: b["status"] == "DELIVERED")
            pages: list[list[str]] = []
            cursor = None
            while True:
                params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
                reply = await gateway.call(
                    "GET", f"/api/subscriptions/{sub['id']}/history/", params=params
                )
                assert reply.status == 200, reply.body
                pages.append([item["id"] for item in reply.json["items"]])
                cursor = reply.json["next_cursor"]
                if cursor is None:
                    break
    finally:
        await receiver.stop()
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == list(reversed(ids))  # newest first
