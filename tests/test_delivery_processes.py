"""Agents and the scheduler as real processes: SIGKILL, rebalancing, graceful shutdown, and the
real 10 s / 30 s ladder."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.topics import ATTEMPTS
from tests.pipeline import create_subscription, ingest_record, produce_ingest, read
from tests.processes import Component
from tests.receiver import Receiver, Reply
from webhookmaster.settings import Settings


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    return dataclasses.replace(
        wm_settings, allowed_cidrs="127.0.0.0/8", retry_ladder="1,1,1,1,1", topic_partitions=3
    )


@pytest.fixture
def components(tmp_path: Path) -> Iterator[list[Component]]:
    started: list[Component] = []
    yield started
    for component in started:
        component.ensure_stopped()


def spawn(name: str, settings: Settings, tmp_path: Path, registry: list[Component]) -> Component:
    component = Component(name, settings, tmp_path).start()
    registry.append(component)
    return component


async def wait_metric(check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition on scraped metrics (no event to await across processes), bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        assert asyncio.get_running_loop().time() < deadline, "metric condition not reached"
        await asyncio.sleep(0.1)


def ids_seen(receiver: Receiver, path: str) -> Counter[str]:
    return Counter(h.headers["webhook-id"] for h in receiver.on(path))


async def test_sigkill_mid_batch_loses_nothing(
    settings: Settings, receiver: Receiver, tmp_path: Path, components: list[Component]
) -> None:
    sub = create_subscription(settings, receiver.url("/bulk"))
    batch = [ingest_record(sub, payload={"i": i}) for i in range(2000)]
    produce_ingest(settings, *batch)
    agent = spawn("agent", settings, tmp_path, components)
    await agent.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/bulk")) >= 300, 60)
    agent.kill()
    before = len(set(ids_seen(receiver, "/bulk")))
    assert before < 2000, "the kill came too late to test anything"
    again = spawn("agent", settings, tmp_path, components)
    await again.wait_ready()
    assert await receiver.wait_for(lambda: len(ids_seen(receiver, "/bulk")) == 2000, 120)
    seen = ids_seen(receiver, "/bulk")
    assert set(seen) == {r["webhook_id"] for r in batch}
    duplicates = sum(n - 1 for n in seen.values())
    print(f"\nSIGKILL after {before} unique deliveries: 2000 delivered, {duplicates} duplicates")
    await again.terminate()


async def test_two_agents_share_and_rebalance(
    settings: Settings, receiver: Receiver, tmp_path: Path, components: list[Component]
) -> None:
    sub = create_subscription(settings, receiver.url("/shared"))
    first = spawn("agent", settings, tmp_path, components)
    second = spawn("agent", settings, tmp_path, components)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    await wait_metric(
        lambda: (
            min(
                first.metric("webhookmaster_assigned_partitions"),
                second.metric("webhookmaster_assigned_partitions"),
            )
            > 0
        )
    )
    batch = [ingest_record(sub, payload={"i": i}) for i in range(1500)]
    for partition in range(3):  # every partition has work, whoever owns it
        produce_ingest(settings, *batch[partition:500:3], partition=partition)
    assert await receiver.wait_for(lambda: len(ids_seen(receiver, "/shared")) == 500, 60)
    counts = [
        first.metric("webhookmaster_delivery_attempts_total"),
        second.metric("webhookmaster_delivery_attempts_total"),
    ]
    assert all(c > 0 for c in counts), f"both agents deliver: {counts}"
    assert await first.terminate() == 0  # the survivor takes over every partition
    for partition in range(3):
        produce_ingest(settings, *batch[500 + partition :: 3], partition=partition)
    assert await receiver.wait_for(lambda: len(ids_seen(receiver, "/shared")) == 1500, 60)
    assert set(ids_seen(receiver, "/shared")) == {r["webhook_id"] for r in batch}
    await second.terminate()


async def test_graceful_shutdown_finishes_in_flight_work(
    settings: Settings, receiver: Receiver, tmp_path: Path, components: list[Component]
) -> None:
    # ten subscriptions, one webhook each: a subscription whose endpoint holds keeps to 2 slots
    subs = [create_subscription(settings, receiver.url("/slowish")) for _ in range(10)]
    sub = subs[0]
    release = asyncio.Event()
    receiver.script("/slowish", then=Reply(200, hold=release))
    batch = [ingest_record(s) for s in subs]
    produce_ingest(settings, *batch)
    agent = spawn("agent", settings, tmp_path, components)
    await agent.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/slowish")) == 10, 60)
    agent.proc.send_signal(15)  # type: ignore[union-attr]
    await asyncio.sleep(0)  # let the receiver's held handlers run once SIGTERM is in
    release.set()
    assert await agent.terminate() == 0
    events = await read(settings, ATTEMPTS, 10)
    assert sorted(e["webhook_id"] for e in events) == sorted(r["webhook_id"] for r in batch)
    # offsets were committed: a new agent redelivers nothing
    again = spawn("agent", settings, tmp_path, components)
    await again.wait_ready()
    marker = ingest_record(sub)
    produce_ingest(settings, marker)
    assert await receiver.wait_for(
        lambda: marker["webhook_id"] in ids_seen(receiver, "/slowish"), 60
    )
    assert len(receiver.on("/slowish")) == 11
    await again.terminate()


async def test_scheduler_sigkill_keeps_held_retries(
    settings: Settings, receiver: Receiver, tmp_path: Path, components: list[Component]
) -> None:
    slow_ladder = dataclasses.replace(settings, retry_ladder="4,4,4,4,4")
    sub = create_subscription(slow_ladder, receiver.url("/later"))
    receiver.script("/later", *[Reply(500)] * 5)
    batch = [ingest_record(sub) for _ in range(5)]
    agent = spawn("agent", slow_ladder, tmp_path, components)
    scheduler = spawn("scheduler", slow_ladder, tmp_path, components)
    await asyncio.gather(agent.wait_ready(), scheduler.wait_ready())
    produce_ingest(slow_ladder, *batch)
    assert await receiver.wait_for(lambda: len(receiver.on("/later")) == 5, 60)
    scheduler.kill()  # the five retries are held in the 4 s tier, not yet due
    restarted = spawn("scheduler", slow_ladder, tmp_path, components)
    await restarted.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/later")) >= 10, 60)
    assert set(ids_seen(receiver, "/later")) == {r["webhook_id"] for r in batch}
    await asyncio.gather(agent.terminate(), restarted.terminate())


async def test_real_ladder_gaps_10s_then_30s(
    wm_settings: Settings, receiver: Receiver, tmp_path: Path, components: list[Component]
) -> None:
    settings = dataclasses.replace(wm_settings, allowed_cidrs="127.0.0.0/8")
    assert settings.retry_ladder == "10,30,60,300,900"  # the shipped default
    sub = create_subscription(settings, receiver.url("/real"))
    receiver.script("/real", Reply(500), Reply(500))
    agent = spawn("agent", settings, tmp_path, components)
    scheduler = spawn("scheduler", settings, tmp_path, components)
    await asyncio.gather(agent.wait_ready(), scheduler.wait_ready())
    produce_ingest(settings, ingest_record(sub))
    assert await receiver.wait_for(lambda: len(receiver.on("/real")) == 3, 60)
    first, second, third = (h.at for h in receiver.on("/real"))
    print(f"\nreal ladder gaps: {second - first:.3f} s, {third - second:.3f} s")
    assert 10.0 <= second - first < 11.0
    assert 30.0 <= third - second < 31.0
    lateness = scheduler.metric("webhookmaster_retry_lateness_seconds_sum")
    assert 0 <= lateness < 1.0
    await asyncio.gather(agent.terminate(), scheduler.terminate())
