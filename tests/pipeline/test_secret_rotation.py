"""Secret rotation on the real pipeline: during the grace period a delivery verifies with the
old secret and with the new one (checked with the ``standardwebhooks`` package, as a receiver
would), X-Hub-Signature-256 uses the new one, and after the grace period only the new one
verifies."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from schemas import records
from tests.support.gateway import LiveGateway
from tests.support.pipeline import full_pipeline
from tests.support.receiver import Hit, Receiver
from webhookmaster import signing
from webhookmaster.settings import Settings

GRACE_S = 20.0
WAIT = 60.0


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    return dataclasses.replace(
        wm_settings,
        allowed_cidrs="127.0.0.0/8",
        retry_ladder="1,1,1,1,1",
        secret_rotation_grace_s=GRACE_S,
    )


def verifies(secret: str, hit: Hit) -> bool:
    """Whether a Standard Webhooks receiver holding ``secret`` accepts ``hit``."""
    try:
        Webhook(secret).verify(hit.body, hit.headers)
    except WebhookVerificationError:
        return False
    return True


async def deliver(gateway: LiveGateway, sub: dict, receiver: Receiver, n: int) -> Hit:
    """Ingest ``{"n": n}`` (signed with the subscription's current secret) and return its
    delivery."""
    body = orjson.dumps({"n": n})
    reply = await gateway.ingest(sub, body, event_type="order.created")
    assert reply.status == 202, reply.body
    webhook_id = reply.json["id"]

    def delivered() -> bool:
        return any(h.headers.get("webhook-id") == webhook_id for h in receiver.hits)

    assert await receiver.wait_for(delivered, WAIT), f"{webhook_id} was not delivered"
    return next(h for h in receiver.hits if h.headers.get("webhook-id") == webhook_id)


async def test_rotation_signs_with_both_secrets_until_the_old_one_expires(
    settings: Settings,
) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/hook"))
            old = sub["secret_key"]
            assert sub["previous_secret_expires_at"] is None
            before = await deliver(gateway, sub, receiver, 0)
            assert verifies(old, before)
            assert len(before.headers["webhook-signature"].split()) == 1

            new = signing.new_secret()
            reply = await gateway.call(
                "POST",
                f"/api/subscriptions/{sub['id']}/rotate-secret/",
                json_body={"secret_key": new},
            )
            assert reply.status == 200, reply.body
            assert reply.json["secret_key"] == new and reply.json["id"] == sub["id"]
            expires = records.parse_time(reply.json["previous_secret_expires_at"])
            assert 0 < (expires - datetime.now(UTC)).total_seconds() <= GRACE_S
            shown = await gateway.call("GET", f"/api/subscriptions/{sub['id']}/")
            assert shown.json["secret_key"] == new
            assert (
                shown.json["previous_secret_expires_at"] == reply.json["previous_secret_expires_at"]
            )

            # The agent reads the rotation from the subscriptions topic: the first delivery
            # after it may still be signed as before, one soon after carries both signatures.
            rotated = {**sub, "secret_key": new}
            n = 1
            during = await deliver(gateway, rotated, receiver, n)
            while len(during.headers["webhook-signature"].split()) != 2:
                assert datetime.now(UTC) < expires, "no delivery with both signatures in time"
                n += 1
                during = await deliver(gateway, rotated, receiver, n)
            assert datetime.now(UTC) < expires
            new_sig, old_sig = during.headers["webhook-signature"].split()
            assert verifies(new, during) and verifies(old, during)
            assert {k.lower(): v for k, v in during.headers.items()}[
                "x-hub-signature-256"
            ] == signing.hub_signature(new, during.body)
            assert new_sig.startswith("v1,") and old_sig.startswith("v1,")

            # After the grace period the old secret no longer signs.
            await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
            after = await deliver(gateway, rotated, receiver, n + 1)
            assert len(after.headers["webhook-signature"].split()) == 1
            assert verifies(new, after) and not verifies(old, after)
    finally:
        await receiver.stop()


async def test_rotation_without_a_body_makes_a_new_secret_and_keeps_it_on_update(
    gateway: LiveGateway,
) -> None:
    sub = await gateway.create_subscription(target_url="https://example.com/hook")
    reply = await gateway.call("POST", f"/api/subscriptions/{sub['id']}/rotate-secret/")
    assert reply.status == 200, reply.body
    fresh = reply.json["secret_key"]
    assert fresh.startswith("whsec_") and fresh != sub["secret_key"]
    # a PATCH that leaves the secret alone keeps the grace period ...
    patched = await gateway.call(
        "PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"event_types": ["a"]}
    )
    assert patched.json["previous_secret_expires_at"] == reply.json["previous_secret_expires_at"]
    # ... a new secret_key through PATCH is a hard cut-over
    cut = await gateway.call(
        "PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"secret_key": "whsec_x"}
    )
    assert cut.json["previous_secret_expires_at"] is None
    bad = await gateway.call(
        "POST", f"/api/subscriptions/{sub['id']}/rotate-secret/", json_body={"other": 1}
    )
    assert bad.status == 400 and bad.json["field"] == "other"
    missing = await gateway.call(
        "POST", "/api/subscriptions/00000000-0000-4000-8000-000000000000/rotate-secret/"
    )
    assert missing.status == 404 and missing.json["error"] == "not_found"
