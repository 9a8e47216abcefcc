"""Delivery agents as real processes: SIGKILL mid-batch, two agents sharing and rebalancing
the partitions, graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

import pytest

from schemas.topics import ATTEMPTS
from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest
from tests.support.receiver import Receiver, Reply
from tests.support.topics import read
from tests.support.waiting import eventually
from webhookmaster.settings import Settings


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    return dataclasses.replace(
        wm_settings, allowed_cidrs="127.0.0.0/8", retry_ladder="1,1,1,1,1", topic_partitions=3
    )


async def test_sigkill_mid_batch_loses_nothing(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    sub = create_subscription(settings, receiver.url("/bulk"))
    batch = [ingest_record(sub, payload={"i": i}) for i in range(2000)]
    produce_ingest(settings, *batch)
    agent = make_component("agent", settings)
    await agent.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/bulk")) >= 300, 60)
    agent.kill()
    before = len(set(receiver.ids("/bulk")))
    assert before < 2000, "the kill came too late to test anything"
    again = make_component("agent", settings)
    await again.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.ids("/bulk")) == 2000, 120)
    seen = receiver.ids("/bulk")
    assert set(seen) == {r["webhook_id"] for r in batch}
    duplicates = sum(n - 1 for n in seen.values())
    print(f"\nSIGKILL after {before} unique deliveries: 2000 delivered, {duplicates} duplicates")
    await again.terminate()


async def test_two_agents_share_and_rebalance(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    sub = create_subscription(settings, receiver.url("/shared"))
    first = make_component("agent", settings)
    second = make_component("agent", settings)
    await asyncio.gather(first.wait_ready(), second.wait_ready())
    assert await eventually(
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
    assert await receiver.wait_for(lambda: len(receiver.ids("/shared")) == 500, 60)
    counts = [
        first.metric("webhookmaster_delivery_attempts_total"),
        second.metric("webhookmaster_delivery_attempts_total"),
    ]
    assert all(c > 0 for c in counts), f"both agents deliver: {counts}"
    assert await first.terminate() == 0  # the survivor takes over every partition
    for partition in range(3):
        produce_ingest(settings, *batch[500 + partition :: 3], partition=partition)
    assert await receiver.wait_for(lambda: len(receiver.ids("/shared")) == 1500, 60)
    assert set(receiver.ids("/shared")) == {r["webhook_id"] for r in batch}
    await second.terminate()


async def test_graceful_shutdown_finishes_in_flight_work(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    # ten subscriptions, one webhook each: a subscription whose endpoint holds keeps to 2 slots
    subs = [create_subscription(settings, receiver.url("/slowish")) for _ in range(10)]
    sub = subs[0]
    release = asyncio.Event()
    receiver.script("/slowish", then=Reply(200, hold=release))
    batch = [ingest_record(s) for s in subs]
    produce_ingest(settings, *batch)
    agent = make_component("agent", settings)
    await agent.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/slowish")) == 10, 60)
    agent.running.send_signal(signal.SIGTERM)
    await asyncio.sleep(0)  # let the receiver's held handlers run once SIGTERM is in
    release.set()
    assert await agent.terminate() == 0
    events = await read(settings, ATTEMPTS, 10)
    assert sorted(e["webhook_id"] for e in events) == sorted(r["webhook_id"] for r in batch)
    # offsets were committed: a new agent redelivers nothing
    again = make_component("agent", settings)
    await again.wait_ready()
    marker = ingest_record(sub)
    produce_ingest(settings, marker)
    assert await receiver.wait_for(lambda: marker["webhook_id"] in receiver.ids("/slowish"), 60)
    assert len(receiver.on("/slowish")) == 11
    await again.terminate()
