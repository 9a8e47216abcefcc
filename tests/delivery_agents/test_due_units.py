"""Broker-free checks of what lets one agent own a subscription on both paths: the partitioner
(Kafka's Java murmur2), the due assignment mirroring the ingest one, the breaker a new owner
takes over from the circuits topic, the rate limit's spacing, and the new metrics.
test_due_assignment.py runs the real thing."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from delivery_agents.breaker import Breaker, Breakers
from delivery_agents.due_assignment import DueMirror
from delivery_agents.rate_limit import RateLimits
from delivery_agents.shares import Shares
from schemas import records
from webhookmaster.kafka_clients import PARTITIONER, producer_config
from webhookmaster.offsets import OffsetTracker
from webhookmaster.partitioning import murmur2, partition_for
from webhookmaster.settings import Settings

# Kafka's own test vectors for Utils.murmur2 (clients UtilsTest.testMurmur2)
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), sorted(JAVA_MURMUR2.items()))
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_for_is_the_java_default_partitioner() -> None:
    # Utils.toPositive(murmur2(key)) % n
    assert partition_for(b"foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6
    assert partition_for("foobar", 6) == partition_for(b"foobar", 6)
    ids = [f"sub-{n}" for n in range(600)]
    spread = {partition_for(i, 6) for i in ids}
    assert spread == set(range(6))


def test_every_producer_of_ours_hashes_keys_like_java() -> None:
    assert PARTITIONER == "murmur2_random"
    assert producer_config(Settings())["partitioner"] == "murmur2_random"


def gauge(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def breakers(published: dict[str, dict[str, str | None]], cooldown_s: float) -> Breakers:
    changes: list[tuple[str, str]] = []

    def make(on_change: Callable[[Breaker], None]) -> Breaker:
        return Breaker(3, 1.0, cooldown_s, 60, on_change)

    def table_circuit(sub_id: str) -> dict[str, str | None]:  # as SubscriptionTable.circuit
        return published.get(sub_id, {"state": "closed", "since": None})

    found = Breakers(make, lambda sub, b: changes.append((sub, b.state)), table_circuit)
    found.changes = changes  # type: ignore[attr-defined]
    return found


def since(seconds_ago: float) -> str:
    return records.iso(datetime.fromtimestamp(time.time() - seconds_ago, UTC))


async def test_a_new_owner_keeps_an_open_breaker_until_its_cooldown() -> None:
    opened = since(0.3)
    group = breakers({"s": {"state": "open", "since": opened}}, cooldown_s=1.0)
    open_before = gauge("webhookmaster_circuits", {"state": "open"})
    breaker = group.get("s")
    assert breaker.state == "open"
    assert breaker.since == pytest.approx(records.parse_time(opened).timestamp())
    assert gauge("webhookmaster_circuits", {"state": "open"}) == open_before + 1
    # the cool-down counts from the published since: about 0.7 s left, not a fresh 1 s
    admit = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0.35)
    assert not admit.done()
    assert await asyncio.wait_for(admit, 2.0) is True  # the one probe
    waiting = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # only one probe per cool-down
    breaker.record(False, True)
    assert await asyncio.wait_for(waiting, 1.0) is False
    assert group.changes == [("s", "half_open"), ("s", "closed")]  # type: ignore[attr-defined]


async def test_a_half_open_breaker_lets_one_probe_go_at_once() -> None:
    group = breakers({"s": {"state": "half_open", "since": since(100)}}, cooldown_s=30)
    breaker = group.get("s")
    assert breaker.state == "half_open"
    assert await asyncio.wait_for(breaker.admit(), 1.0) is True
    breaker.record(True, True)
    assert breaker.state == "open"


def test_closed_or_unknown_state_starts_closed() -> None:
    group = breakers(
        {
            "closed": {"state": "closed", "since": since(5)},
            "never": {"state": "open", "since": None},
            "bad": {"state": "open", "since": "not a time"},
        },
        cooldown_s=30,
    )
    for sub in ("closed", "never", "bad", "unknown"):
        assert group.get(sub).state == "closed"


def test_forget_drops_breakers_and_pacers() -> None:
    group = breakers({"s": {"state": "open", "since": since(1)}}, cooldown_s=30)
    open_before = gauge("webhookmaster_circuits", {"state": "open"})
    group.get("s")
    group.forget(["s", "other"])
    assert "s" not in group.breakers
    assert gauge("webhookmaster_circuits", {"state": "open"}) == open_before
    limits = RateLimits()
    limits.pacers["s"] = object()  # type: ignore[assignment]
    limits.forget(["s"])
    assert limits.pacers == {}


async def test_waiting_on_the_rate_limit_is_a_gauge() -> None:
    limits = RateLimits()
    before = gauge("webhookmaster_rate_limit_waiting")
    await limits.wait("s", 10.0)  # the first turn is at once
    waiting = [asyncio.create_task(limits.wait("s", 10.0)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert gauge("webhookmaster_rate_limit_waiting") == before + 3
    await asyncio.wait_for(asyncio.gather(*waiting), 2.0)
    assert gauge("webhookmaster_rate_limit_waiting") == before


async def test_lanes_busy_counts_subscriptions_with_deliveries_in_flight() -> None:
    shares = Shares(8, 4)
    release = asyncio.Event()
    entered = asyncio.Event()
    counts: list[int] = []

    async def deliver(key: str) -> None:
        async with shares.slot(key):
            counts.append(1)
            if len(counts) == 3:
                entered.set()
            await release.wait()

    tasks = [asyncio.create_task(deliver(k)) for k in ("a", "a", "b")]
    await asyncio.wait_for(entered.wait(), 1.0)
    assert gauge("webhookmaster_lanes_busy") == 2
    release.set()
    await asyncio.gather(*tasks)
    assert gauge("webhookmaster_lanes_busy") == 0


async def test_requests_stay_spaced_when_turns_bunch_up_in_the_lane() -> None:
    """Deliveries whose turns came 0.1 s apart but that reach the request together (their lane
    held them) still start about 0.1 s apart (SPACING), and later turns move behind them."""
    limits = RateLimits()
    for _ in range(3):
        await limits.wait("s", 10.0)  # three turns reserved, the last ~0.2 s after the first
    starts = []
    for _ in range(3):  # the three reach their request at once
        await limits.spaced("s", 10.0)
        starts.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.095 * 0.99 for gap in gaps), gaps  # SPACING / rate
    pacer = limits.pacers["s"]
    assert pacer.next_at >= starts[-1] + 0.099  # the next turn comes a full 1 / rate later
    await limits.spaced("other", 10.0)  # no pacer (no rate limit): at once
    await limits.spaced("s", None)


async def test_requests_woken_together_still_start_spaced() -> None:
    """Requests waiting for their spacing at once (a stalled loop wakes them together) start
    one by one, each at least SPACING / rate after the previous start."""
    limits = RateLimits()
    await limits.wait("s", 10.0)
    starts: list[float] = []

    async def request() -> None:
        await limits.spaced("s", 10.0)
        starts.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(request() for _ in range(4))), 2.0)
    gaps = [b - a for a, b in itertools.pairwise(sorted(starts))]
    assert len(gaps) == 3 and all(gap >= 0.095 * 0.99 for gap in gaps), gaps


class FakeDue:
    """The parts of a ConsumerThread the mirror uses, without Kafka."""

    def __init__(self) -> None:
        self.assigned: set[tuple[str, int]] = set()
        self.tracker = OffsetTracker()
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def run_sync(self, fn: Callable[..., None], *args: object) -> None:
        fn(*args)

    def assign(self, tps: list[tuple[str, int]]) -> None:
        self.calls.append(("assign", tps))
        self.assigned.update(tps)

    def unassign(self, tps: list[tuple[str, int]]) -> None:
        self.calls.append(("unassign", tps))
        self.assigned.difference_update(tps)


def test_the_mirror_assigns_matching_due_partitions_and_drains_before_releasing() -> None:
    due = FakeDue()
    released: list[list[str]] = []
    mirror = DueMirror(due, "p.due", 5.0, released.append)  # type: ignore[arg-type]
    mirror.assigned([("p.ingest", 0), ("p.ingest", 2)])
    mirror.assigned([("p.ingest", 1)])  # incremental: a rebalance added one
    assert due.assigned == {("p.due", 0), ("p.due", 1), ("p.due", 2)}
    assert gauge("webhookmaster_due_assigned_partitions") == 3
    mirror.note("sub-a", 2)
    mirror.note("sub-b", 0)
    due.tracker.started(("p.due", 2), 7)  # a retry of partition 2 in flight
    finisher = threading.Timer(0.2, due.tracker.done, (("p.due", 2), 7))
    finisher.start()
    began = time.monotonic()
    mirror.revoked([("p.ingest", 2)])
    assert time.monotonic() - began >= 0.15  # released only once the retry was done
    assert due.calls[-1] == ("unassign", [("p.due", 2)])
    assert due.assigned == {("p.due", 0), ("p.due", 1)}
    assert released == [["sub-a"]]  # its breaker and pacer are forgotten
    mirror.revoked([("p.ingest", 0)])
    assert released == [["sub-a"], ["sub-b"]]
