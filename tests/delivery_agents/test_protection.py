"""Endpoint protection on the real stack: auto-disable (410 Gone, a failure window), its
operator event, the pending webhooks it dead-letters, and re-enabling through the API."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import orjson
from prometheus_client import REGISTRY

from delivery_agents.agent import GROUP_ID
from schemas import records
from schemas.topics import ATTEMPTS, CIRCUITS, DEAD_LETTER, OPERATOR_EVENTS, SUBSCRIPTIONS
from tests.support.gateway import running_gateway, validate_record
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest, running
from tests.support.receiver import Receiver, Reply
from tests.support.topics import consume, read
from webhookmaster.kafka_clients import admin_client
from webhookmaster.settings import Settings

WAIT = 60.0


def disabled_count(cause: str) -> float:
    value = REGISTRY.get_sample_value(
        "webhookmaster_subscriptions_auto_disabled_total", {"cause": cause}
    )
    return value or 0.0


def latest_subscription(settings: Settings, sub_id: str, count: int) -> dict:
    """The newest of the first ``count`` records of ``sub_id`` on the subscriptions topic,
    checked against its JSON schema."""
    msgs = consume(settings, settings.topic(SUBSCRIPTIONS), count, 30)
    mine = [m for m in msgs if m.key() == sub_id.encode()]
    assert len(mine) == count
    return validate_record(mine[-1].value(), "subscription")


async def test_410_disables_at_once(settings: Settings, receiver: Receiver) -> None:
    sub_id = create_subscription(settings, receiver.url("/gone"))
    receiver.script("/gone", then=Reply(410, "gone"))
    first, later = ingest_record(sub_id), ingest_record(sub_id)
    before = disabled_count("gone")
    async with running(settings, scheduler=False):
        produce_ingest(settings, first)
        [event] = await read(settings, OPERATOR_EVENTS, 1)
        produce_ingest(settings, later)
        letters = await read(settings, DEAD_LETTER, 2)
        [attempt] = await read(settings, ATTEMPTS, 1)
    assert event["kind"] == "subscription_disabled" and event["subscription_id"] == sub_id
    assert event["cause"] == "gone" and "410 Gone" in event["reason"]
    assert disabled_count("gone") == before + 1
    record = latest_subscription(settings, sub_id, 2)
    assert record["is_active"] is False and "410 Gone" in record["disabled_reason"]
    assert record["disabled_at"] == event["at"] and "secret_key" not in record
    # the 410 attempt itself is not retried; the later webhook never reaches the endpoint
    assert attempt["outcome"] == "failed" and attempt["status_code"] == 410
    assert len(receiver.on("/gone")) == 1
    by_id = {letter["webhook_id"]: letter["reason"] for letter in letters}
    assert "not retried: HTTP 410" in by_id[first["webhook_id"]]
    assert "disabled: the endpoint answered 410 Gone" in by_id[later["webhook_id"]]


async def test_failure_window_disables_and_dead_letters_pending(
    settings: Settings, receiver: Receiver
) -> None:
    settings = dataclasses.replace(settings, auto_disable_after_s=1.5)
    sub_id = create_subscription(settings, receiver.url("/down"))
    receiver.script("/down", then=Reply(500, "down"))
    webhooks = [ingest_record(sub_id) for _ in range(3)]
    before = disabled_count("failing")
    async with running(settings):
        produce_ingest(settings, *webhooks)
        [event] = await read(settings, OPERATOR_EVENTS, 1)
        letters = await read(settings, DEAD_LETTER, 3, timeout=WAIT)
    assert event["cause"] == "failing" and "only failed" in event["reason"]
    assert disabled_count("failing") == before + 1
    # every pending webhook (waiting in a retry tier) ends dead-lettered with the reason
    assert sorted(letter["webhook_id"] for letter in letters) == sorted(
        w["webhook_id"] for w in webhooks
    )
    for letter in letters:
        assert "disabled: deliveries only failed" in letter["reason"], letter["reason"]
    hits = receiver.on("/down")
    assert len(hits) < 6 * len(webhooks)  # the ladder was cut short
    assert hits[-1].at - hits[0].at >= 1.5  # not before the window


async def test_patch_is_active_re_enables(settings: Settings, receiver: Receiver) -> None:
    receiver.script("/gone", Reply(410))
    async with running_gateway(settings) as gw:
        sub = await gw.create_subscription(target_url=receiver.url("/gone"), rate_limit=5)
        assert sub["disabled_reason"] is None and sub["rate_limit"] == 5.0
        async with running(settings, scheduler=False):
            reply = await gw.ingest(sub, orjson.dumps({"n": 1}))
            assert reply.status == 202
            await read(settings, OPERATOR_EVENTS, 1)

            async def disabled() -> dict | None:
                got = (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).json
                return got if got["is_active"] is False else None

            for _ in range(300):  # the gateway follows the topic; bounded
                shown = await disabled()
                if shown:
                    break
                await receiver.wait_for(lambda: False, 0.05)
            assert shown and "410 Gone" in shown["disabled_reason"] and shown["disabled_at"]
            assert shown["rate_limit"] == 5.0  # the disable changed nothing else
            # still inactive: the reason stays; active again: it goes
            kept = await gw.call("PATCH", f"/api/subscriptions/{sub['id']}/", json_body={})
            assert kept.json["disabled_reason"] == shown["disabled_reason"]
            back = await gw.call(
                "PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"is_active": True}
            )
            assert back.status == 200
            assert back.json["is_active"] is True
            assert back.json["disabled_reason"] is None and back.json["disabled_at"] is None
            reply = await gw.ingest(sub, orjson.dumps({"n": 2}))
            assert reply.status == 202
            assert await receiver.wait_for(lambda: len(receiver.on("/gone")) == 2, WAIT)


def agents_with_partitions(settings: Settings) -> int:
    """Members of the agents' group that own at least one partition."""
    admin = admin_client(settings)
    group = settings.group(GROUP_ID)
    found = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    return sum(1 for m in found.members if m.assignment.topic_partitions)


RATE = 20.0  # deliveries per second
WINDOW_S = 30.0


async def test_rate_limit_holds_across_two_agents(settings: Settings, receiver: Receiver) -> None:
    """Half direct ingest records (keyed by the subscription), half fan-out records produced
    straight to Kafka (keyed by their own id, so spread over both agents' partitions: the
    agents expand them into records keyed by the subscription first); a few 500s retried. The
    receiver sees at most RATE requests per second over a 30 s window, within 10 %."""
    settings = dataclasses.replace(settings, retry_ladder="1,1,1,1,1")
    sub_id = create_subscription(settings, receiver.url("/paced"), rate_limit=RATE)
    receiver.script("/paced", *[Reply(500)] * 5)
    total = int(RATE * WINDOW_S * 1.3)  # enough to keep the limit saturated the whole window
    direct = [ingest_record(sub_id) for _ in range(total // 2)]
    fanned = [ingest_record(None) for _ in range(total - len(direct))]
    async with running(settings, agents=2):
        # both agents own partitions before the load starts: no rebalance during the window
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(agents_with_partitions, settings) < 2:
            assert time.monotonic() < deadline, "two agents never owned partitions"
            await asyncio.sleep(0.2)
        produce_ingest(settings, *[r for pair in zip(direct, fanned, strict=True) for r in pair])
        assert await receiver.wait_for(
            lambda: len(receiver.on("/paced")) >= total + 5, WINDOW_S * 3
        ), len(receiver.on("/paced"))
        attempts = await read(settings, ATTEMPTS, total + 5, timeout=60)
    hits = sorted(h.at for h in receiver.on("/paced"))
    start = hits[0]
    in_window = sum(1 for at in hits if at < start + WINDOW_S)
    print(f"rate limit {RATE:g}/s: {in_window} requests in {WINDOW_S:g} s at the receiver")
    assert abs(in_window - RATE * WINDOW_S) <= 0.1 * RATE * WINDOW_S, in_window
    # waiting is not an attempt: one attempt per request, and nothing failed for the limit
    assert len(attempts) == len(hits) == total + 5
    assert Counter(a["outcome"] for a in attempts) == {"delivered": total, "retrying": 5}


def transitions(state: str) -> float:
    value = REGISTRY.get_sample_value("webhookmaster_circuit_transitions_total", {"state": state})
    return value or 0.0


COOLDOWN_S = 2.0


async def test_breaker_opens_probes_once_per_cooldown_and_closes(
    settings: Settings, receiver: Receiver
) -> None:
    """Three failures in a row open the breaker; the webhooks that come meanwhile wait (no
    attempts); after each cool-down exactly one probe goes: the first fails (open again), the
    second succeeds and closes it, and the waiting webhooks go. The gateway shows the state."""
    settings = dataclasses.replace(
        settings, breaker_failures=3, breaker_ratio=1.0, breaker_cooldown_s=COOLDOWN_S
    )
    receiver.script("/cb", *[Reply(500)] * 4)  # three failures, then the first probe fails
    before = {s: transitions(s) for s in ("open", "half_open", "closed")}
    async with running_gateway(settings) as gw:
        sub = await gw.create_subscription(target_url=receiver.url("/cb"))
        assert sub["circuit"] == {"state": "closed", "since": None}
        first = [ingest_record(sub["id"]) for _ in range(3)]
        later = [ingest_record(sub["id"]) for _ in range(5)]
        async with running(settings, scheduler=False):
            produce_ingest(settings, *first)
            [opened] = await read(settings, CIRCUITS, 1)
            assert opened["circuit"] == "open" and opened["subscription_id"] == sub["id"]
            shown = None
            for _ in range(200):  # the gateway's table follows the circuits topic; bounded
                shown = (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).json
                if shown["circuit"]["state"] != "closed":
                    break
                await receiver.wait_for(lambda: False, 0.05)
            assert shown and shown["circuit"]["state"] in ("open", "half_open"), shown
            produce_ingest(settings, *later)
            changes = await read(settings, CIRCUITS, 5, timeout=WAIT)
            assert await receiver.wait_for(lambda: len(receiver.on("/cb")) == 8, WAIT)
            attempts = await read(settings, ATTEMPTS, 8)
            closed = changes[-1]
            for _ in range(200):
                shown = (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).json
                if shown["circuit"]["state"] == "closed":
                    break
                await receiver.wait_for(lambda: False, 0.05)
    assert [c["circuit"] for c in changes] == ["open", "half_open", "open", "half_open", "closed"]
    assert shown["circuit"] == {"state": "closed", "since": closed["since"]}
    hits = receiver.on("/cb")
    # one probe per cool-down: hit 4 fails, hit 5 closes; the other four waited, then went
    opened_at = records.parse_time(changes[0]["since"]).timestamp()
    reopened_at = records.parse_time(changes[2]["since"]).timestamp()
    assert hits[3].at >= opened_at + COOLDOWN_S * 0.95
    assert hits[4].at >= reopened_at + COOLDOWN_S * 0.95
    closed_at = records.parse_time(closed["since"]).timestamp()
    assert all(h.at >= closed_at - 0.05 for h in hits[5:])
    # waiting is not an attempt: one attempt event per request
    assert len(attempts) == len(hits) == 8
    assert Counter(a["outcome"] for a in attempts) == {"retrying": 4, "delivered": 4}
    assert transitions("open") == before["open"] + 2
    assert transitions("half_open") == before["half_open"] + 2
    assert transitions("closed") == before["closed"] + 1


async def test_rate_limit_input_rules(settings: Settings) -> None:
    async with running_gateway(settings) as gw:
        for bad in (0, -1, "5", True, 1e9):
            reply = await gw.call(
                "POST",
                "/api/subscriptions/",
                json_body={"target_url": "https://example.com/h", "rate_limit": bad},
            )
            assert reply.status == 400, bad
            assert reply.json["error"] == "validation_error" and reply.json["field"] == "rate_limit"
        sub = await gw.create_subscription(rate_limit=2.5)
        assert sub["rate_limit"] == 2.5
        path = f"/api/subscriptions/{sub['id']}/"
        kept = await gw.call("PATCH", path, json_body={"is_active": True})
        assert kept.json["rate_limit"] == 2.5  # PATCH keeps what it is not given
        cleared = await gw.call("PATCH", path, json_body={"rate_limit": None})
        assert cleared.status == 200 and cleared.json["rate_limit"] is None
        put = await gw.call("PUT", path, json_body={"target_url": "https://example.com/h"})
        assert put.json["rate_limit"] is None  # PUT: omitted means the default, no limit
