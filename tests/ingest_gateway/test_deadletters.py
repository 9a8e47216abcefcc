"""Dead letters on the real pipeline: projected into PostgreSQL, listed (filters, cursor pages),
redriven through the HTTP API and the ``webhookmaster deadletters`` command, an unreadable one
refused; and the management key they require."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.records import iso
from tests.support.gateway import LiveGateway, running_gateway
from tests.support.pipeline import full_pipeline, produce_ingest, status_of
from tests.support.receiver import Receiver, Reply
from tests.support.waiting import eventually
from webhookmaster import settings as settings_mod
from webhookmaster.settings import Settings

WAIT = 90.0
KEY = "ops-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Delivery settings with a breaker that never opens on these failures."""
    return dataclasses.replace(settings, breaker_failures=1000)


async def letters(gateway: LiveGateway, **query: str) -> dict[str, Any]:
    reply = await gateway.call("GET", "/api/deadletters/", params=query)
    assert reply.status == 200, reply.body
    return dict(reply.json)


async def redrive(gateway: LiveGateway, body: dict[str, Any]) -> Any:
    return await gateway.call("POST", "/api/deadletters/redrive/", json_body=body)


async def cli(settings: Settings, gateway: LiveGateway, *args: str) -> tuple[int, str, str]:
    """``webhookmaster deadletters ...`` in a child process against the live gateway."""
    env = {**settings_mod.to_env(settings), "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webhookmaster",
        "deadletters",
        *args,
        "--url",
        gateway.url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dead_letters_listed_and_redriven(settings: Settings) -> None:
    receiver = await Receiver().start()
    receiver.script("/d", then=Reply(500, "down"))
    try:
        async with full_pipeline(settings) as gateway:
            t0 = iso(datetime.now(UTC))
            sub = await gateway.create_subscription(target_url=receiver.url("/d"))
            ids = []
            for i in range(2):
                reply = await gateway.ingest(sub, b'{"i": %d}' % i, event_type="order.created")
                assert reply.status == 202, reply.body
                ids.append(reply.json["id"])
            produce_ingest(settings, b"not a record {")  # the agent dead-letters it
            for webhook_id in ids:
                await status_of(gateway, webhook_id, lambda b: b["status"] == "FAILED", WAIT)

            async def three() -> bool:
                return len((await letters(gateway))["items"]) == 3

            await eventually(three, timeout=WAIT, what="three dead letters")
            everything = (await letters(gateway))["items"]
            mine = (await letters(gateway, subscription_id=sub["id"]))["items"]
            unreadable = (await letters(gateway, reason="unreadable"))["items"]
            none_before = (await letters(gateway, until=t0))["items"]
            pages, cursor = [], None
            while True:
                page = await letters(gateway, limit="1", **({"cursor": cursor} if cursor else {}))
                pages.append([item["id"] for item in page["items"]])
                cursor = page["next_cursor"]
                if cursor is None:
                    break

            # redrive: the unreadable one alone is refused; the endpoint is back for the others
            receiver.script("/d", then=Reply(200, "back"))
            only_unreadable = await redrive(gateway, {"ids": [unreadable[0]["id"]]})
            unknown = await redrive(gateway, {"ids": [999_999_999]})
            first = next(item for item in mine if item["webhook_id"] == ids[0])
            one = await redrive(gateway, {"ids": [first["id"]]})
            await status_of(gateway, ids[0], lambda b: b["status"] == "DELIVERED", WAIT)

            # the command: list as JSON, then redrive by filter (the other webhook, and the
            # unreadable letter refused)
            code, out, err = await cli(settings, gateway, "list")
            assert code == 0, err
            listed = out
            code, out, err = await cli(settings, gateway, "redrive", "--reason", "unreadable")
            assert code == 0, err
            refused_line = out.strip()
            code, out, err = await cli(
                settings, gateway, "redrive", "--id", str(mine[0]["id"]),
                "--id", str(mine[1]["id"]), "--json",
            )  # fmt: skip
            assert code == 0, err
            by_cli = json.loads(out)
            await status_of(gateway, ids[1], lambda b: b["status"] == "DELIVERED", WAIT)
            redriven = (await letters(gateway, subscription_id=sub["id"]))["items"]
    finally:
        await receiver.stop()

    assert len(everything) == 3 and len(mine) == 2
    assert {item["webhook_id"] for item in mine} == set(ids)
    assert all(item["redrivable"] and item["record"]["body"] for item in mine)
    assert all("gave up after 6 attempt(s)" in item["reason"] for item in mine)
    assert len(unreadable) == 1 and unreadable[0]["webhook_id"] is None
    assert unreadable[0]["raw"] == "not a record {" and not unreadable[0]["redrivable"]
    assert none_before == []
    assert [len(p) for p in pages] == [1, 1, 1]
    assert [i for p in pages for i in p] == [item["id"] for item in everything]  # newest first

    assert only_unreadable.status == 422 and only_unreadable.json["error"] == "not_redrivable"
    assert unknown.status == 404 and unknown.json["error"] == "not_found"
    assert one.status == 202 and one.json == {"count": 1, "refused": 0}
    assert str(first["id"]) in listed and "UNREADABLE" in listed
    assert refused_line == "redriven: 0, refused: 1"
    assert by_cli == {"count": 2, "refused": 0}
    assert all(item["redriven_at"] for item in redriven)
    hits = receiver.ids("/d")
    assert hits[ids[0]] == 6 + 2  # its ladder, the API's redrive, the command's
    assert hits[ids[1]] == 6 + 1


async def test_operator_routes_need_the_management_key(wm_settings: Settings) -> None:
    settings = dataclasses.replace(wm_settings, api_keys=KEY)
    async with running_gateway(settings) as gateway:
        sub = await gateway.create_subscription(headers=AUTH)
        calls = [
            ("GET", "/api/deadletters/", None),
            ("POST", "/api/deadletters/redrive/", {"ids": [1]}),
            ("POST", "/api/webhooks/some-id/resend/", None),
            ("POST", f"/api/subscriptions/{sub['id']}/recover/", {"since": iso(datetime.now(UTC))}),
        ]
        without = [await gateway.call(m, p, json_body=b) for m, p, b in calls]
        listed = await gateway.call("GET", "/api/deadletters/", headers=AUTH)
        recovered = await gateway.call(*calls[3][:2], json_body=calls[3][2], headers=AUTH)
        no_key = await cli(wm_settings, gateway, "list")  # no WM_API_KEYS, no --api-key
        with_key = await cli(wm_settings, gateway, "list", "--json", "--api-key", KEY)
        from_settings = await cli(settings, gateway, "list", "--json")  # WM_API_KEYS' first
    assert [r.status for r in without] == [401] * 4
    assert all(r.json["error"] == "unauthorized" for r in without)
    assert listed.status == 200 and listed.json == {"items": [], "next_cursor": None}
    assert recovered.status == 202 and recovered.json == {"count": 0}
    assert no_key[0] == 1 and "HTTP 401" in no_key[2]
    for code, out, _ in (with_key, from_settings):
        assert code == 0 and json.loads(out) == {"items": [], "next_cursor": None}
