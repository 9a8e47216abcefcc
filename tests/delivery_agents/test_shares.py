"""Fair delivery slots (delivery_agents/shares.py): slow lanes keep to their share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from delivery_agents import shares as shares_mod
from delivery_agents.shares import SLOW_SHARE, URGENT, Shares


@pytest.fixture(autouse=True)
def short_slow_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shares_mod, "SLOW_S", 0.05)


async def _hold(shares: Shares, key: str, release: asyncio.Event, log: list[str]) -> None:
    async with shares.slot(key):
        log.append(key)
        await release.wait()


async def _quick(shares: Shares, key: str) -> None:
    async with shares.slot(key):
        await asyncio.sleep(0)


async def _wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``check()`` holds (bounded)."""
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_hanging_endpoints_leave_the_healthy_subscription_its_slots() -> None:
    async def scenario() -> None:
        shares = Shares(total=64, per_subscription=8)
        hang = asyncio.Event()
        started: list[str] = []
        # 20 subscriptions whose deliveries hang, 10 each: new lanes start SLOW_SHARE each
        slow = {
            k: [asyncio.create_task(_hold(shares, f"slow{k}", hang, started)) for _ in range(10)]
            for k in range(20)
        }
        await _wait_for(lambda: len(started) == 20 * SLOW_SHARE)
        await asyncio.sleep(0.1)  # past the slow threshold: those lanes are slow now
        assert shares.in_flight == 20 * SLOW_SHARE
        assert all(started.count(f"slow{k}") == SLOW_SHARE for k in range(20))
        # what waits for a slow lane is counted apart (the agent fetches on meanwhile)
        assert shares.slow_waiting() == 20 * (10 - SLOW_SHARE)
        # a healthy subscription is served at once, with slots beyond a slow share
        healthy_started: list[str] = []
        gate = asyncio.Event()
        healthy = [
            asyncio.create_task(_hold(shares, "healthy", gate, healthy_started)) for _ in range(8)
        ]
        await _wait_for(lambda: len(healthy_started) == SLOW_SHARE)  # new: a slow start
        gate.set()
        await asyncio.wait_for(asyncio.gather(*healthy), 5)
        await asyncio.wait_for(asyncio.gather(*(_quick(shares, "healthy") for _ in range(200))), 5)
        more = [asyncio.create_task(_hold(shares, f"slow{k}", hang, started)) for k in range(20)]
        await asyncio.sleep(0.05)
        assert shares.slow_waiting() == 20 * (11 - SLOW_SHARE)
        assert "healthy" in shares.lanes and not shares.lanes["healthy"].slow(time.monotonic())
        # a slow lane's hanging deliveries end: its next ones take pooled slots, SLOW_SHARE
        for task in slow[0][:SLOW_SHARE]:
            task.cancel()
        await _wait_for(lambda: started.count("slow0") == 2 * SLOW_SHARE)
        assert shares.slow_in_flight == SLOW_SHARE <= shares.slow_cap
        assert shares.lanes["slow0"].active == SLOW_SHARE
        hang.set()
        rest = [t for tasks in slow.values() for t in tasks if not t.cancelled()] + more
        await asyncio.wait_for(asyncio.gather(*rest, return_exceptions=True), 5)
        assert shares.in_flight == 0 and shares.slow_in_flight == 0
        assert shares.slow_waiting() == 0

    asyncio.run(scenario())


def test_slow_lanes_share_one_pool() -> None:
    async def scenario() -> None:
        shares = Shares(total=16, per_subscription=8)
        hang = asyncio.Event()
        started: list[str] = []
        for k in range(8):  # known slow: one delivery of each took longer than SLOW_S
            shares.lane(f"s{k}").average_s = 10.0
        tasks = [
            asyncio.create_task(_hold(shares, f"s{k}", hang, started))
            for k in range(8)
            for _ in range(4)
        ]
        await _wait_for(lambda: len(started) == shares.slow_cap)
        await asyncio.sleep(0.05)
        assert len(started) == shares.slow_cap == 4 and shares.slow_in_flight == 4
        assert shares.slow_waiting() == 32 - 4
        await asyncio.wait_for(asyncio.gather(*(_quick(shares, "fast") for _ in range(50))), 5)
        hang.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert shares.in_flight == shares.slow_in_flight == shares.slow_waiting() == 0

    asyncio.run(scenario())


def test_a_fast_lane_grows_to_its_cap_and_lanes_share_round_robin() -> None:
    async def scenario() -> None:
        shares = Shares(total=4, per_subscription=4)
        await _quick(shares, "a")  # no longer new: may use 4
        release = asyncio.Event()
        order: list[str] = []
        held = [asyncio.create_task(_hold(shares, "a", release, order)) for _ in range(4)]
        await _wait_for(lambda: len(order) == 4)
        assert shares.lanes["a"].active == 4
        # waiting: 4 more of a, then 2 of b; freed slots alternate between the lanes
        gate = asyncio.Event()
        rest = [asyncio.create_task(_hold(shares, "a", gate, order)) for _ in range(4)]
        rest += [asyncio.create_task(_hold(shares, "b", gate, order)) for _ in range(2)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*held)
        await _wait_for(lambda: len(order) == 8)
        assert sorted(order[4:]) == ["a", "a", "b", "b"]
        gate.set()
        await asyncio.gather(*rest)
        assert shares.in_flight == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_back_its_place() -> None:
    async def scenario() -> None:
        shares = Shares(total=1, per_subscription=1)
        release = asyncio.Event()
        log: list[str] = []
        first = asyncio.create_task(_hold(shares, "a", release, log))
        await _wait_for(lambda: log == ["a"])
        waiting = asyncio.create_task(_hold(shares, "b", release, log))
        await asyncio.sleep(0.01)
        waiting.cancel()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert shares.in_flight == 0 and not shares.lanes["b"].waiters
        await asyncio.wait_for(_quick(shares, "c"), 1)

    asyncio.run(scenario())


def test_an_urgent_delivery_takes_the_next_free_slot() -> None:
    async def scenario() -> None:
        shares = Shares(total=2, per_subscription=2)
        await _quick(shares, "backlog")
        release = asyncio.Event()
        order: list[str] = []
        running = [asyncio.create_task(_hold(shares, "backlog", release, order)) for _ in range(2)]
        await _wait_for(lambda: len(order) == 2)
        gate = asyncio.Event()
        queued = [asyncio.create_task(_hold(shares, "backlog", gate, order)) for _ in range(5)]
        queued += [asyncio.create_task(_hold(shares, "other", gate, order)) for _ in range(2)]
        await asyncio.sleep(0.01)

        async def due() -> None:
            URGENT.set(True)  # as the agent's due loop does, in its own context
            await _hold(shares, "other", gate, order)

        urgent = asyncio.create_task(due())
        await asyncio.sleep(0.01)
        release.set()
        await _wait_for(lambda: len(order) == 4)
        # the two freed slots: the urgent one first, then round-robin as before
        assert order[2] == "other" and shares.lanes["other"].active >= 1
        assert not URGENT.get()  # the context of the caller is untouched
        gate.set()
        await asyncio.wait_for(asyncio.gather(*running, *queued, urgent), 5)
        assert shares.in_flight == 0

    asyncio.run(scenario())


def test_a_parked_slow_lane_starts_once_the_slow_pool_has_room() -> None:
    """Parked slow lanes used to come back only one per pooled slot released: when the lanes
    that came back no longer took a pooled slot (fast again, or their waiter gone), the pool
    emptied with a lane still parked, and its deliveries waited for ever (49 webhooks of a
    fan-out bench run, never attempted)."""

    async def scenario() -> None:
        shares = Shares(total=8, per_subscription=4)
        assert shares.slow_cap == 2
        for key in ("a", "b", "x", "y", "z"):
            shares.lane(key).average_s = 10.0  # slow
        releases = {key: asyncio.Event() for key in ("a", "b", "x", "y", "z")}
        started: list[str] = []
        holders = [asyncio.create_task(_hold(shares, k, releases[k], started)) for k in "ab"]
        await _wait_for(lambda: started == ["a", "b"])
        waiters = [asyncio.create_task(_hold(shares, k, releases[k], started)) for k in "xyz"]
        await _wait_for(lambda: len(shares.parked) == 3)
        shares.lane("x").average_s = shares.lane("y").average_s = 0.0  # fast again
        releases["a"].set()
        await _wait_for(lambda: "x" in started)
        releases["b"].set()
        await _wait_for(lambda: "y" in started)
        await _wait_for(lambda: "z" in started)  # the pool is empty: z's turn
        for event in releases.values():
            event.set()
        await asyncio.wait_for(asyncio.gather(*holders, *waiters), 5)
        assert shares.in_flight == shares.slow_in_flight == 0 and not shares.parked

    asyncio.run(scenario())
