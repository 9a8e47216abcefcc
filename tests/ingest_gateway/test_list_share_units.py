"""List pages' share of the gateway's loop (``list_share.ListShare``), on a fake clock: pages
never wait without ingest traffic; while ingest is busy they wait once their share is spent,
one at a time, and go again as it refills."""

from __future__ import annotations

import asyncio

import pytest

from ingest_gateway import list_share
from ingest_gateway.list_share import BURST_S, BUSY_S, ListShare


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:  # the fake time passes as the page waits
        slept.append(seconds)
        clock.now += seconds
        await real_sleep(0)

    monkeypatch.setattr(list_share.asyncio, "sleep", sleep)
    clock.slept = slept  # type: ignore[attr-defined]
    return clock


async def test_without_ingest_pages_never_wait(clock: Clock) -> None:
    share = ListShare(0.1, clock)
    for _ in range(100):
        await share.turn()
        share.spent(0.01)  # a second of pages in no time: no debt while idle
    assert clock.slept == []  # type: ignore[attr-defined]


async def test_while_ingest_is_busy_pages_keep_to_their_share(clock: Clock) -> None:
    share = ListShare(0.1, clock)
    held_before = list_share.HELD._value.get()
    started = clock.now
    for _ in range(50):
        share.ingest_seen()  # ingest keeps arriving
        await share.turn()
        share.spent(0.004)  # each page takes 4 ms of the loop
    # the first 49 pages' 0.196 s at a share of 0.1 take (0.196 - burst) / 0.1 s at least (the
    # last page's cost is paid by the next)
    assert clock.now - started >= (49 * 0.004 - BURST_S) / 0.1 - 1e-9
    assert clock.now - started < (50 * 0.004) / 0.1  # and no more than the share asks
    assert list_share.HELD._value.get() > held_before


async def test_pages_go_again_once_ingest_stops(clock: Clock) -> None:
    share = ListShare(0.1, clock)
    share.ingest_seen()
    await share.turn()
    share.spent(1.0)  # a huge debt while busy
    clock.now += BUSY_S  # no ingest since
    before = len(clock.slept)  # type: ignore[attr-defined]
    await share.turn()
    assert len(clock.slept) == before  # type: ignore[attr-defined]


async def test_waiting_pages_go_one_at_a_time_in_arrival_order(clock: Clock) -> None:
    share = ListShare(0.5, clock)
    share.ingest_seen()
    await share.turn()
    share.spent(0.1)  # spent: the next pages wait
    order: list[int] = []

    async def page(n: int) -> None:
        share.ingest_seen()
        await share.turn()
        order.append(n)
        share.spent(0.05)

    await asyncio.gather(*(page(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
