"""Resend and recover on the real pipeline: the gateway, an agent, the scheduler and the
projector on the real broker and PostgreSQL, a real receiver."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.records import iso
from tests.support.gateway import LiveGateway
from tests.support.pipeline import full_pipeline, status_of
from tests.support.receiver import Receiver, Reply
from webhookmaster.settings import Settings

WAIT = 90.0
BODY = b'{"b": 1,   "a" : [1, 2.50]}'  # exact bytes: the spaces and key order must come back


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The delivery settings, with a circuit breaker that never opens on these failures."""
    return dataclasses.replace(settings, breaker_failures=1000)


def attempts(status: dict[str, Any]) -> list[tuple[int, bool]]:
    return [(a["attempt_number"], a["is_success"]) for a in status["delivery_attempts"]]


async def ingest(gateway: LiveGateway, sub: dict[str, Any], body: bytes = BODY) -> str:
    reply = await gateway.ingest(sub, body, event_type="order.created")
    assert reply.status == 202, reply.body
    return str(reply.json["id"])


def failed_for_good(body: dict[str, Any]) -> bool:
    return body["status"] == "FAILED" and len(body["delivery_attempts"]) == 6


async def test_resend_of_a_delivered_webhook(settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/ok"))
            webhook_id = await ingest(gateway, sub)
            await status_of(gateway, webhook_id, lambda b: b["status"] == "DELIVERED", WAIT)

            reply = await gateway.call("POST", f"/api/webhooks/{webhook_id}/resend/")
            assert reply.status == 202, reply.body
            assert reply.json == {"id": webhook_id, "status": "accepted"}
            assert await receiver.wait_for(lambda: len(receiver.on("/ok")) == 2, WAIT)
            final = await status_of(
                gateway,
                webhook_id,
                lambda b: b["status"] == "DELIVERED" and len(b["delivery_attempts"]) == 2,
                WAIT,
            )
    finally:
        await receiver.stop()
    hits = receiver.on("/ok")
    assert [h.headers["webhook-id"] for h in hits] == [webhook_id, webhook_id]
    assert [h.body for h in hits] == [BODY, BODY]
    assert attempts(final) == [(1, True), (2, True)]


async def test_resend_of_a_failed_webhook_gets_a_ladder_of_its_own(settings: Settings) -> None:
    receiver = await Receiver().start()
    receiver.script("/down", then=Reply(500, "down"))
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/down"))
            webhook_id = await ingest(gateway, sub)
            failed = await status_of(gateway, webhook_id, failed_for_good, WAIT)
            assert [n for n, _ in attempts(failed)] == [1, 2, 3, 4, 5, 6]

            # the new chain's first attempt fails too: its ladder (not the spent one) retries it
            receiver.script("/down", Reply(500, "still down"), then=Reply(200, "back"))
            reply = await gateway.call("POST", f"/api/webhooks/{webhook_id}/resend/")
            assert reply.status == 202, reply.body
            final = await status_of(gateway, webhook_id, lambda b: b["status"] == "DELIVERED", WAIT)
    finally:
        await receiver.stop()
    assert attempts(final) == [*((n, False) for n in range(1, 8)), (8, True)]
    hits = receiver.on("/down")
    assert len(hits) == 8 and {h.headers["webhook-id"] for h in hits} == {webhook_id}
    assert {h.body for h in hits} == {BODY}


async def test_resend_of_an_unknown_webhook_is_404(settings: Settings) -> None:
    async with full_pipeline(settings) as gateway:
        reply = await gateway.call("POST", "/api/webhooks/no-such-webhook/resend/")
    assert reply.status == 404 and reply.json["error"] == "not_found"


async def test_recover_sends_only_the_failed_webhooks_of_the_window(settings: Settings) -> None:
    receiver = await Receiver().start()
    receiver.script("/r", then=Reply(500, "down"))
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/r"))
            before = await ingest(gateway, sub, b'{"before": true}')
            await status_of(gateway, before, failed_for_good, WAIT)
            since = iso(datetime.now(UTC))
            failed = [await ingest(gateway, sub, b'{"n": %d}' % i) for i in range(2)]
            for webhook_id in failed:
                await status_of(gateway, webhook_id, failed_for_good, WAIT)
            receiver.script("/r", then=Reply(200, "back"))
            delivered = await ingest(gateway, sub, b'{"ok": true}')
            await status_of(gateway, delivered, lambda b: b["status"] == "DELIVERED", WAIT)

            path = f"/api/subscriptions/{sub['id']}/recover/"
            reply = await gateway.call("POST", path, json_body={"since": since})
            assert reply.status == 202, reply.body
            assert reply.json == {"count": 2}
            for webhook_id in failed:
                again = await status_of(
                    gateway, webhook_id, lambda b: b["status"] == "DELIVERED", WAIT
                )
                assert attempts(again)[-1] == (7, True)
            bad = await gateway.call("POST", path, json_body={"since": "yesterday"})
            empty = await gateway.call("POST", path, json_body={"since": since, "until": since})
    finally:
        await receiver.stop()
    counts = receiver.ids("/r")
    assert counts[before] == 6  # failed before the window: not sent again
    assert [counts[i] for i in failed] == [7, 7]
    assert counts[delivered] == 1
    assert bad.status == 400 and bad.json["field"] == "since"
    assert empty.status == 400 and empty.json["field"] == "until"
