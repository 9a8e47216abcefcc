"""Delivery agents and the retry ladder against a real broker and real HTTP receivers."""

from __future__ import annotations

import dataclasses
from collections import Counter

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from delivery_agents.shares import SLOW_SHARE
from schemas import records
from schemas.topics import ATTEMPTS, DEAD_LETTER, DUE
from tests.support.fixtures_infra import MakeSubscription
from tests.support.pipeline import (
    delete_subscription,
    ingest_record,
    produce_ingest,
    running,
)
from tests.support.receiver import Receiver, Reply
from tests.support.topics import read
from webhookmaster import signing
from webhookmaster.settings import Settings

WAIT = 60.0


def outcomes(events: list[dict], webhook_id: str) -> list[tuple[int, str]]:
    return sorted(
        (e["attempt_number"], e["outcome"]) for e in events if e["webhook_id"] == webhook_id
    )


async def test_delivered_first_time_signed(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    secret = signing.new_secret()
    sub = make_subscription(receiver.url("/hook"), secret=secret)
    record = ingest_record(sub, payload={"order": 42, "name": "café"})
    async with running(settings):
        produce_ingest(settings, record)
        assert await receiver.wait_for(lambda: len(receiver.on("/hook")) == 1, WAIT)
        events = await read(settings, ATTEMPTS, 1)
    hit = receiver.on("/hook")[0]
    assert orjson.loads(hit.body) == {"order": 42, "name": "café"}
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"].startswith("WebhookMaster/")
    assert hit.headers["X-Webhook-Event-Type"] == "order.created"
    assert hit.headers["webhook-id"] == record["webhook_id"]
    # the receiver's own library verifies the Standard Webhooks signature of the exact bytes
    Webhook(secret).verify(hit.body, {k.lower(): v for k, v in hit.headers.items()})
    assert signing.hub_signature_valid(secret, hit.body, hit.headers["X-Hub-Signature-256"])
    [event] = events
    assert event["outcome"] == "delivered" and event["status_code"] == 200
    assert event["attempt_number"] == 1 and event["response_excerpt"] == "ok"
    assert event["next_attempt_at"] is None


async def test_500_500_200_three_attempts(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/flaky"))
    receiver.script("/flaky", Reply(500), Reply(500))
    record = ingest_record(sub)
    async with running(settings):
        produce_ingest(settings, record)
        assert await receiver.wait_for(lambda: len(receiver.on("/flaky")) == 3, WAIT)
        events = await read(settings, ATTEMPTS, 3)
    assert outcomes(events, record["webhook_id"]) == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "delivered"),
    ]
    hits = receiver.on("/flaky")
    assert {h.headers["webhook-id"] for h in hits} == {record["webhook_id"]}  # stable id
    assert hits[1].at - hits[0].at >= 1.0 and hits[2].at - hits[1].at >= 1.0


async def test_always_failing_six_attempts_then_dead_letter(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/down"))
    receiver.script("/down", then=Reply(500, "nope"))
    record = ingest_record(sub)
    async with running(settings):
        produce_ingest(settings, record)
        assert await receiver.wait_for(lambda: len(receiver.on("/down")) == 6, WAIT)
        events = await read(settings, ATTEMPTS, 6)
        [letter] = await read(settings, DEAD_LETTER, 1)
    assert outcomes(events, record["webhook_id"]) == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "retrying"),
        (4, "retrying"),
        (5, "retrying"),
        (6, "failed"),
    ]
    assert letter["webhook_id"] == record["webhook_id"]
    assert "gave up after 6 attempt(s)" in letter["reason"] and "HTTP 500" in letter["reason"]
    assert letter["record"]["attempt"] == 6
    # a seventh attempt never comes: the scheduler and agent are idle once the letter is out
    assert len(receiver.on("/down")) == 6


async def test_timeout_and_connection_refused_are_failures(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    slow = make_subscription(receiver.url("/slow"))
    receiver.script("/slow", Reply(200, delay_s=5))  # longer than the 2 s request timeout
    refused = make_subscription("http://127.0.0.1:9/nothing-listens")
    slow_rec, refused_rec = ingest_record(slow), ingest_record(refused)
    async with running(settings, scheduler=False):
        produce_ingest(settings, slow_rec, refused_rec)
        events = await read(settings, ATTEMPTS, 2)
    by_id = {e["webhook_id"]: e for e in events}
    assert by_id[slow_rec["webhook_id"]]["outcome"] == "retrying"
    assert "timed out" in by_id[slow_rec["webhook_id"]]["error"]
    assert by_id[refused_rec["webhook_id"]]["outcome"] == "retrying"
    assert "connection failed" in by_id[refused_rec["webhook_id"]]["error"]
    assert by_id[refused_rec["webhook_id"]]["status_code"] is None


async def test_redirect_is_not_followed(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/moved"))
    receiver.script("/moved", Reply(302, headers={"Location": receiver.url("/elsewhere")}))
    record = ingest_record(sub)
    async with running(settings, scheduler=False):
        produce_ingest(settings, record)
        [event] = await read(settings, ATTEMPTS, 1)
    assert event["status_code"] == 302 and event["outcome"] == "retrying"
    assert "redirect not followed" in event["error"]
    assert receiver.on("/elsewhere") == []


async def test_retry_after_moves_to_a_longer_tier(
    wm_settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    settings = dataclasses.replace(
        wm_settings, allowed_cidrs="127.0.0.0/8", retry_ladder="1,3,6,9,12"
    )
    sub = make_subscription(receiver.url("/busy"))
    receiver.script("/busy", Reply(429, headers={"Retry-After": "2"}))
    record = ingest_record(sub)
    async with running(settings):
        produce_ingest(settings, record)
        assert await receiver.wait_for(lambda: len(receiver.on("/busy")) == 2, WAIT)
        events = await read(settings, ATTEMPTS, 2)
        [retry] = await read(settings, "retry.30s", 1)  # tier 2 (3 s here), not tier 1
    first = next(e for e in events if e["attempt_number"] == 1)
    gap = (
        records.parse_time(first["next_attempt_at"]) - records.parse_time(first["started_at"])
    ).total_seconds()
    assert 2.9 <= gap <= 4.0
    hits = receiver.on("/busy")
    assert hits[1].at - hits[0].at >= 2.9
    assert retry["webhook_id"] == record["webhook_id"] and retry["attempt"] == 1


async def test_ssrf_guard_refuses_loopback_by_default(
    wm_settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    settings = dataclasses.replace(wm_settings, allowed_cidrs="", retry_ladder="1,1,1,1,1")
    by_ip = make_subscription(receiver.url("/ip"))
    by_name = make_subscription(f"http://localhost:{receiver.port}/name")
    ip_rec, name_rec = ingest_record(by_ip), ingest_record(by_name)
    async with running(settings):
        produce_ingest(settings, ip_rec, name_rec)
        events = await read(settings, ATTEMPTS, 2)
        letters = await read(settings, DEAD_LETTER, 2)
    for event in events:
        assert event["outcome"] == "failed" and event["attempt_number"] == 1
        assert "SSRF guard" in event["error"]
    assert {ltr["webhook_id"] for ltr in letters} == {ip_rec["webhook_id"], name_rec["webhook_id"]}
    assert all("not retried" in ltr["reason"] for ltr in letters)
    assert receiver.hits == []


async def test_malformed_record_dead_lettered_next_one_delivered(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/next"))
    good = ingest_record(sub)
    async with running(settings, scheduler=False):
        produce_ingest(settings, b"{not json", {"event_type": "x"}, good, partition=0)
        assert await receiver.wait_for(lambda: len(receiver.on("/next")) == 1, WAIT)
        letters = await read(settings, DEAD_LETTER, 2)
    reasons = sorted(ltr["reason"] for ltr in letters)
    assert reasons[0].startswith("unreadable record: missing field: payload")
    assert reasons[1].startswith("unreadable record: value is not JSON")
    assert any(ltr["raw"] == "{not json" for ltr in letters)
    assert all(ltr["source"]["partition"] == 0 for ltr in letters)


async def test_direct_produce_without_id_gets_a_stable_one(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/direct"))
    receiver.script("/direct", Reply(500))
    bare = {"subscription_id": sub, "event_type": "user.signup", "payload": [1, 2, 3]}
    async with running(settings):
        produce_ingest(settings, bare)
        assert await receiver.wait_for(lambda: len(receiver.on("/direct")) == 2, WAIT)
    first, second = receiver.on("/direct")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert orjson.loads(second.body) == [1, 2, 3]


async def test_fan_out_to_matching_active_subscriptions(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    every = make_subscription(receiver.url("/every"))
    orders = make_subscription(receiver.url("/orders"), event_types=["order.paid"])
    make_subscription(receiver.url("/users"), event_types=["user.signup"])
    make_subscription(receiver.url("/off"), active=False)
    event = ingest_record(None, payload={"total": 10}, event_type="order.paid")
    async with running(settings, scheduler=False):
        produce_ingest(settings, event)
        assert await receiver.wait_for(
            lambda: len(receiver.on("/every")) == 1 and len(receiver.on("/orders")) == 1, WAIT
        )
        attempts = await read(settings, ATTEMPTS, 2)
    assert receiver.on("/users") == [] and receiver.on("/off") == []
    ids = {e["subscription_id"]: e["webhook_id"] for e in attempts}
    assert ids == {
        every: records.derived_id(event["webhook_id"], every),
        orders: records.derived_id(event["webhook_id"], orders),
    }


async def test_deleted_and_inactive_subscriptions_fail_with_reason(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    gone = make_subscription(receiver.url("/gone"))
    delete_subscription(settings, gone)
    off = make_subscription(receiver.url("/off"), active=False)
    gone_rec, off_rec = ingest_record(gone), ingest_record(off)
    async with running(settings, scheduler=False):
        produce_ingest(settings, gone_rec, off_rec)
        letters = await read(settings, DEAD_LETTER, 2)
    reasons = {ltr["webhook_id"]: ltr["reason"] for ltr in letters}
    assert "does not exist" in reasons[gone_rec["webhook_id"]]
    assert "inactive" in reasons[off_rec["webhook_id"]]
    assert receiver.hits == []


async def test_slow_subscription_does_not_starve_others(
    wm_settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    import asyncio

    settings = dataclasses.replace(
        wm_settings,
        allowed_cidrs="127.0.0.0/8",
        max_in_flight=16,
        max_in_flight_per_subscription=4,
        request_timeout_s=30,
    )
    release = asyncio.Event()
    slow = make_subscription(receiver.url("/slow"))
    fast = make_subscription(receiver.url("/fast"))
    receiver.script("/slow", then=Reply(200, hold=release))
    slow_recs = [ingest_record(slow) for _ in range(20)]
    fast_recs = [ingest_record(fast) for _ in range(20)]
    async with running(settings, scheduler=False):
        produce_ingest(settings, *slow_recs, *fast_recs)
        # every fast webhook is delivered while the slow ones hold their slots
        assert await receiver.wait_for(
            lambda: len(receiver.on("/fast")) == 20 and len(receiver.on("/slow")) >= SLOW_SHARE,
            WAIT,
        )
        # a new (then slow) subscription's share, below the per-subscription cap of 4
        assert len(receiver.on("/slow")) == SLOW_SHARE
        release.set()
        assert await receiver.wait_for(lambda: len(receiver.on("/slow")) == 20, WAIT)


def test_canonical_standard_webhooks_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = signing.standard_signature(
        signing.key_bytes(secret),
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_non_whsec_secret_uses_utf8_bytes() -> None:
    assert signing.key_bytes("plain-secret") == b"plain-secret"
    assert signing.key_bytes("whsec_not*base64") == b"whsec_not*base64"


async def test_scheduler_pauses_full_partitions_and_hands_back_in_order(
    settings: Settings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    make_subscription: MakeSubscription,
) -> None:
    from retry_scheduler import metrics as scheduler_metrics
    from retry_scheduler import scheduler as scheduler_mod

    monkeypatch.setattr(scheduler_mod, "HOLD_HIGH", 4)
    monkeypatch.setattr(scheduler_mod, "HOLD_LOW", 2)
    # a first retry 4 s away: the 30 failed webhooks pile up in the tier however slowly the
    # agent publishes them (a loaded machine), so the partition fills and is paused
    settings = dataclasses.replace(settings, retry_ladder="4,1,1,1,1")
    sub = make_subscription(receiver.url("/held"))
    receiver.script("/held", *[Reply(500)] * 30)  # every first attempt fails
    batch = [ingest_record(sub) for _ in range(30)]
    pauses = scheduler_metrics.PAUSES._value.get()
    async with running(settings):
        produce_ingest(settings, *batch, partition=0)
        assert await receiver.wait_for(lambda: len(receiver.on("/held")) == 60, WAIT)
        due = await read(settings, DUE, 30)
    assert scheduler_metrics.PAUSES._value.get() > pauses
    hits = [h.headers["webhook-id"] for h in receiver.on("/held")]
    assert sorted(Counter(hits).values()) == [2] * 30
    handed_back = [r["webhook_id"] for r in due if r.get("attempt") == 1]
    assert handed_back == [r["webhook_id"] for r in batch]  # in the tier partition's order
