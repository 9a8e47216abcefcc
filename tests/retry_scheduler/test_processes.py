"""The retry scheduler as a real process beside a real agent: SIGKILL keeps the retries it
holds, and the shipped ladder's first gaps are 10 s and 30 s."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest
from tests.support.receiver import Receiver, Reply
from webhookmaster.settings import Settings


async def test_scheduler_sigkill_keeps_held_retries(
    wm_settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    slow_ladder = dataclasses.replace(
        wm_settings, allowed_cidrs="127.0.0.0/8", retry_ladder="4,4,4,4,4"
    )
    sub = create_subscription(slow_ladder, receiver.url("/later"))
    receiver.script("/later", *[Reply(500)] * 5)
    batch = [ingest_record(sub) for _ in range(5)]
    agent = make_component("agent", slow_ladder)
    scheduler = make_component("scheduler", slow_ladder)
    await asyncio.gather(agent.wait_ready(), scheduler.wait_ready())
    produce_ingest(slow_ladder, *batch)
    assert await receiver.wait_for(lambda: len(receiver.on("/later")) == 5, 60)
    scheduler.kill()  # the five retries are held in the 4 s tier, not yet due
    restarted = make_component("scheduler", slow_ladder)
    await restarted.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.on("/later")) >= 10, 60)
    assert set(receiver.ids("/later")) == {r["webhook_id"] for r in batch}
    await asyncio.gather(agent.terminate(), restarted.terminate())


async def test_real_ladder_gaps_10s_then_30s(
    wm_settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    settings = dataclasses.replace(wm_settings, allowed_cidrs="127.0.0.0/8")
    assert settings.retry_ladder == "10,30,60,300,900"  # the shipped default
    sub = create_subscription(settings, receiver.url("/real"))
    receiver.script("/real", Reply(500), Reply(500))
    agent = make_component("agent", settings)
    scheduler = make_component("scheduler", settings)
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
