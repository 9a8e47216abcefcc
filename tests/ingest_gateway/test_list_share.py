"""Ingest before listing, on a real gateway and broker: while webhooks are being ingested, list
pages beyond their share of the loop wait (``webhookmaster_list_pages_held_total``), and every
walk still sees every subscription once, in order; without ingest no page waits."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from ingest_gateway.list_share import HELD, ListShare
from ingest_gateway.state import GATEWAY
from tests.support.gateway import LiveGateway, running_gateway
from webhookmaster.settings import Settings

WAIT = 120.0


@pytest.fixture
async def gateway(wm_settings: Settings) -> AsyncIterator[LiveGateway]:
    """A gateway whose list pages may take 1 % of its loop while it ingests, with no burst
    (so that a few pages are enough to be held)."""
    async with running_gateway(dataclasses.replace(wm_settings, list_share=0.01)) as live:
        state = live.app[GATEWAY]
        state.list_share = ListShare(state.settings.list_share, burst_s=0.0)
        yield live


async def walk(gateway: LiveGateway) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        reply = await gateway.call("GET", "/api/subscriptions/", params=params)
        assert reply.status == 200, reply.body
        seen += [s["id"] for s in reply.json["items"]]
        cursor = reply.json["next_cursor"]
        if cursor is None:
            return seen


async def test_pages_wait_for_ingest_and_every_walk_stays_whole(gateway: LiveGateway) -> None:
    subs = [await gateway.create_subscription() for _ in range(24)]
    expected = [s["id"] for s in subs]  # created in order: the list's order
    assert await walk(gateway) == expected
    held = HELD._value.get()
    assert await walk(gateway) == expected  # no ingest: nothing held
    assert HELD._value.get() == held

    walked = asyncio.Event()
    accepted: list[int] = []

    async def ingest_meanwhile() -> None:
        while not walked.is_set():
            reply = await gateway.ingest(subs[0], b'{"n": 1}')
            accepted.append(reply.status)

    async def walks() -> list[list[str]]:
        await asyncio.sleep(0)  # the ingest task goes first
        try:
            return list(await asyncio.gather(*(walk(gateway) for _ in range(3))))
        finally:
            walked.set()

    ingest = [asyncio.create_task(ingest_meanwhile()) for _ in range(4)]
    results = await asyncio.wait_for(walks(), WAIT)
    await asyncio.wait_for(asyncio.gather(*ingest), WAIT)
    assert results == [expected] * 3
    assert HELD._value.get() > held
    assert accepted and set(accepted) == {202}
