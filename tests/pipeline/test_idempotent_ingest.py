"""Idempotency-Key on ingest and fan-out across two gateway processes and a gateway restart:
the same key answers the same id and leads to one delivery chain; ``Idempotent-Replayed`` where
the gateway can know (its memory, then the status view)."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import REGISTRY

from schemas import records
from schemas.topics import INGEST
from status_projector.main import serve as serve_projector
from tests.support.fixtures_processes import MakeComponent
from tests.support.gateway import LiveGateway
from tests.support.pipeline import running
from tests.support.receiver import Receiver
from tests.support.topics import read_to_end, webhook_view
from tests.support.waiting import eventually
from webhookmaster.settings import Settings

WAIT = 60.0
DROPPED = "webhookmaster_duplicates_dropped_total"
REPLAYED = "Idempotent-Replayed"


def dropped() -> float:
    return REGISTRY.get_sample_value(DROPPED) or 0.0


def copies(settings: Settings, webhook_id: str) -> int:
    """Ingest records with this webhook id (each produced copy)."""
    found = read_to_end(settings, settings.topic(INGEST))
    return sum(1 for m in found if webhook_view(m)["webhook_id"] == webhook_id)


async def test_idempotency_key_across_two_gateways_and_a_restart(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    first, second = make_component("gateway", settings), make_component("gateway", settings)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    stop = asyncio.Event()
    projector = asyncio.create_task(serve_projector(settings, stop, port=0))
    before = dropped()
    try:
        async with aiohttp.ClientSession() as session, running(settings, scheduler=False):
            a = LiveGateway(web.Application(), first.url, session, settings)
            b = LiveGateway(web.Application(), second.url, session, settings)
            sub = await a.create_subscription(target_url=receiver.url("/once"))
            other = await a.create_subscription(target_url=receiver.url("/other"))
            body, key = b'{"order": 42}', {"Idempotency-Key": "order-42"}
            expected = records.keyed_id(sub["id"], "order-42")

            async def ingest(gw: LiveGateway) -> str | None:
                reply = await gw.ingest(sub, body, headers=key)
                assert reply.status == 202, reply.body
                assert reply.json == {"id": expected, "status": "accepted"}
                return reply.headers.get(REPLAYED)

            async def visible(gw: LiveGateway) -> bool:
                return (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).status == 200

            assert await eventually(lambda: visible(b), timeout=WAIT)
            assert await ingest(a) is None  # the first time
            assert await ingest(a) == "true"  # this process remembers: nothing produced again
            await ingest(b)  # the other process: the same id (a copy, unless projected already)
            # the same key for another subscription is another webhook
            elsewhere = await a.ingest(other, body, headers=key)
            assert elsewhere.json["id"] == records.keyed_id(other["id"], "order-42") != expected
            # a restart forgets the memory; the status view still knows once it is projected
            assert await first.terminate() == 0
            again = make_component("gateway", settings)
            await again.wait_ready()
            c = LiveGateway(web.Application(), again.url, session, settings)
            assert await eventually(lambda: _status_is(c, expected, "DELIVERED"), timeout=WAIT), (
                "the webhook was never delivered"
            )
            assert await ingest(c) == "true"
            # every produced copy after the first is dropped by the agent
            produced = await asyncio.to_thread(copies, settings, expected)
            assert produced >= 1
            assert await eventually(lambda: dropped() - before == produced - 1, timeout=WAIT)
            assert len(receiver.on("/other")) == 1
            await asyncio.gather(second.terminate(), again.terminate())
    finally:
        stop.set()
        assert await asyncio.wait_for(projector, 60) == 0
    assert dict(receiver.ids("/once")) == {expected: 1}


async def _status_is(gw: LiveGateway, webhook_id: str, status: str) -> bool:
    reply = await gw.call("GET", f"/api/status/{webhook_id}/")
    return reply.status == 200 and reply.json["status"] == status


async def test_fan_out_idempotency_key_across_two_gateways(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    first, second = make_component("gateway", settings), make_component("gateway", settings)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    before = dropped()
    async with aiohttp.ClientSession() as session, running(settings, scheduler=False):
        a = LiveGateway(web.Application(), first.url, session, settings)
        b = LiveGateway(web.Application(), second.url, session, settings)
        subs = [
            (await a.create_subscription(target_url=receiver.url("/fan")))["id"] for _ in range(4)
        ]
        event = {"event_type": "order.created", "payload": {"order": 9}}
        event_id = records.keyed_id("events", "evt-9")
        answers = []
        for gw in (a, a, b):
            reply = await gw.call(
                "POST", "/api/events/", json_body=event, headers={"Idempotency-Key": "evt-9"}
            )
            assert reply.status == 202 and reply.json["event_id"] == event_id, reply.body
            answers.append(reply.headers.get(REPLAYED))
        assert answers[:2] == [None, "true"]
        # gateway b produced the event again: the agent drops every subscriber's copy
        assert await receiver.wait_for(lambda: len(receiver.on("/fan")) == len(subs), WAIT)
        assert await eventually(lambda: dropped() - before == len(subs), timeout=WAIT)
        await asyncio.gather(first.terminate(), second.terminate())
    assert dict(receiver.ids("/fan")) == {records.derived_id(event_id, s): 1 for s in subs}
