"""Replay from the log on the real pipeline: after a receiver "lost" its deliveries, a replay
of a time window delivers again, from the ingest topic itself, exactly the subscription's
webhooks of that window (fan-out ones included, each once; none of another subscription, none
outside the window or the chosen event types), through the API and through ``webhookmaster
replay``."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ingest_gateway import replay
from schemas import records
from tests.support.env import clean_env
from tests.support.gateway import LiveGateway
from tests.support.pipeline import full_pipeline, ingest_record, produce_ingest, status_of
from tests.support.receiver import Receiver
from tests.support.waiting import eventually
from webhookmaster.settings import PROJECT_ROOT, Settings

WAIT = 60.0


async def boundary() -> datetime:
    """A moment strictly after every record produced so far and before every later one (Kafka
    timestamps are milliseconds)."""
    moment = datetime.now(UTC) + timedelta(milliseconds=2)
    assert await eventually(lambda: datetime.now(UTC) > moment + timedelta(milliseconds=1))
    return moment


async def send(gateway: LiveGateway, sub: dict[str, Any], n: int, event_type: str) -> str:
    reply = await gateway.ingest(sub, orjson.dumps({"n": n}), event_type=event_type)
    assert reply.status == 202, reply.body
    return str(reply.json["id"])


@pytest.mark.timeout(300)
async def test_replay_delivers_a_window_again_from_the_log(settings: Settings) -> None:
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/a"), secret_key="s")
            other = await gateway.create_subscription(target_url=receiver.url("/b"))
            before = [await send(gateway, sub, n, "order.created") for n in range(2)]
            since = await boundary()
            inside = [await send(gateway, sub, n, "order.created") for n in range(3)]
            paid = await send(gateway, sub, 9, "order.paid")
            await send(gateway, other, 1, "order.created")
            produce_ingest(settings, ingest_record(None, {"e": 1}, "order.created", "evt-7"))
            fanned = records.derived_id("evt-7", sub["id"])
            until = await boundary()
            after = await send(gateway, sub, 99, "order.created")
            window = {*inside, paid, fanned}
            everything = {*before, *window, after}
            assert await receiver.wait_for(lambda: everything <= set(receiver.ids("/a")), WAIT), (
                receiver.ids("/a")
            )
            # attempts are numbered on from what the status row counts: await its projection
            await status_of(gateway, paid, lambda b: len(b["delivery_attempts"]) == 1)
            receiver.hits.clear()  # the receiver lost its data

            reply = await gateway.call(
                "POST",
                f"/api/subscriptions/{sub['id']}/replay/",
                json_body={"since": records.iso(since), "until": records.iso(until)},
            )
            assert reply.status == 202, reply.body
            job = reply.json
            assert job["state"] == "done" and job["count"] == len(window)
            assert await receiver.wait_for(lambda: window <= set(receiver.ids("/a")), WAIT)
            progress = await gateway.call("GET", f"/api/replays/{job['id']}/")
            # the replay is a new delivery chain: its attempt numbers go on from the first
            await status_of(gateway, paid, lambda b: len(b["delivery_attempts"]) == 2)

            only_paid = await gateway.call(
                "POST",
                f"/api/subscriptions/{sub['id']}/replay/",
                json_body={"since": records.iso(since), "event_types": ["order.paid"]},
            )
            assert only_paid.status == 202 and only_paid.json["count"] == 1
            assert await receiver.wait_for(lambda: receiver.ids("/a")[paid] == 2, WAIT)
            done = await status_of(gateway, paid, lambda b: len(b["delivery_attempts"]) == 3)
    finally:
        await receiver.stop()
    assert receiver.ids("/a") == Counter({**dict.fromkeys(window, 1), paid: 2})
    assert not receiver.on("/b")
    body = progress.json
    assert progress.status == 200 and body["state"] == "done" and body["count"] == len(window)
    assert body["scanned"] == body["total"] >= len(window)
    assert body["since"] == records.iso(since) and body["error"] is None
    assert done["payload"] == {"n": 9} and done["status"] == "DELIVERED"
    assert [a["attempt_number"] for a in done["delivery_attempts"]] == [1, 2, 3]


async def test_replay_refuses_bad_windows_and_unknown_ids(settings: Settings) -> None:
    async with full_pipeline(settings) as gateway:
        sub = await gateway.create_subscription(target_url="https://example.com/hook")
        path = f"/api/subscriptions/{sub['id']}/replay/"
        now = datetime.now(UTC)
        for body, field in (
            ({}, "since"),
            ({"since": "yesterday"}, "since"),
            ({"since": records.iso(now), "until": records.iso(now - timedelta(hours=1))}, "until"),
            ({"since": records.iso(now), "event_types": [" x"]}, "event_types"),
            ({"since": records.iso(now), "extra": 1}, "extra"),
        ):
            reply = await gateway.call("POST", path, json_body=body)
            assert reply.status == 400 and reply.json["field"] == field, (body, reply.body)
        unknown = await gateway.call(
            "POST",
            "/api/subscriptions/00000000-0000-4000-8000-000000000000/replay/",
            json_body={"since": records.iso(now)},
        )
        assert unknown.status == 404
        for job_id in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
            missing = await gateway.call("GET", f"/api/replays/{job_id}/")
            assert missing.status == 404 and missing.json["error"] == "not_found"


@pytest.mark.timeout(300)
async def test_the_replay_command_follows_the_job_with_a_progress_bar(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay, "INLINE_RECORDS", 0)  # every job runs on after its 202
    receiver = await Receiver().start()
    try:
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/c"))
            since = await boundary()
            sent = {await send(gateway, sub, n, "order.created") for n in range(3)}
            assert await receiver.wait_for(lambda: sent <= set(receiver.ids("/c")), WAIT)
            receiver.hits.clear()
            started = await gateway.call(
                "POST",
                f"/api/subscriptions/{sub['id']}/replay/",
                json_body={"since": records.iso(since), "event_types": ["not.sent"]},
            )
            assert started.status == 202, started.body
            assert started.json["count"] is None and started.json["total"] >= 3

            async def finished() -> dict[str, Any] | None:
                reply = await gateway.call("GET", f"/api/replays/{started.json['id']}/")
                return reply.json if reply.json["state"] != "running" else None

            ended = await eventually(finished, timeout=WAIT)
            assert ended and ended["state"] == "done" and ended["count"] == 0
            assert ended["scanned"] == ended["total"] == started.json["total"]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "webhookmaster.ops.cli", "replay",
                "--subscription", sub["id"], "--since", records.iso(since),
                "--gateway", gateway.url,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                env=clean_env(),
                cwd=PROJECT_ROOT,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), WAIT)
            assert await receiver.wait_for(lambda: sent <= set(receiver.ids("/c")), WAIT)
    finally:
        await receiver.stop()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "done: 3 webhook(s) re-delivered"
    assert "[##############################] 100%" in err.decode()
    assert receiver.ids("/c") == Counter(dict.fromkeys(sent, 1))
