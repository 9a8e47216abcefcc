"""A saturated delivery agent stays a stable consumer group member (issue 13): thousands of
records to a fast loopback receiver, every slot busy, a second agent joining under load; no
member is fenced, no offset commit fails, and every record is delivered exactly once."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest
from tests.support.processes import ComponentProcess
from tests.support.receiver import Receiver
from tests.support.waiting import eventually
from webhookmaster.settings import Settings

SUBSCRIPTIONS = 16  # x 32 in flight each: more than the agent's 256 slots
WAVE = 3000  # records per wave; two waves
# What a member that lost its place in the group, or a commit that did not land, logs.
TROUBLE = re.compile(
    r"UNKNOWN_MEMBER_ID|Unknown member|FENCED|fenced|commit failed|STALE_MEMBER_EPOCH"
    r"|lost .* \(no longer a group member\)",
)
HEARTBEAT_TIMEOUT = re.compile(r"Timed out (ConsumerGroup)?HeartbeatRequest")


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    return dataclasses.replace(wm_settings, allowed_cidrs="127.0.0.0/8")


def whole_log(agent: ComponentProcess) -> str:
    return agent.log_path.read_text(errors="replace")


def trouble(agent: ComponentProcess) -> list[str]:
    return [line for line in whole_log(agent).splitlines() if TROUBLE.search(line)]


async def test_a_saturated_agent_keeps_its_membership_and_delivers_each_record_once(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    subs = [create_subscription(settings, receiver.url("/load")) for _ in range(SUBSCRIPTIONS)]
    first_wave = [ingest_record(subs[i % SUBSCRIPTIONS], payload={"i": i}) for i in range(WAVE)]
    second_wave = [
        ingest_record(subs[i % SUBSCRIPTIONS], payload={"i": i}) for i in range(WAVE, 2 * WAVE)
    ]
    produce_ingest(settings, *first_wave)  # a backlog: the agent starts saturated
    first = make_component("agent", settings)
    await first.wait_ready()
    assert await receiver.wait_for(lambda: len(receiver.ids("/load")) >= 500, 120)
    second = make_component("agent", settings)  # joins while the first is busy
    await second.wait_ready()
    assert await eventually(
        lambda: (
            min(
                first.metric("webhookmaster_assigned_partitions"),
                second.metric("webhookmaster_assigned_partitions"),
            )
            > 0
        ),
        timeout=120,
    ), "the second agent got no partition"
    produce_ingest(settings, *second_wave)  # both saturated after the rebalance
    every = {r["webhook_id"] for r in first_wave + second_wave}
    assert await receiver.wait_for(lambda: len(receiver.ids("/load")) >= len(every), 300)
    assert await first.terminate() == 0 and await second.terminate() == 0
    seen = receiver.ids("/load")
    assert set(seen) == every
    twice = {webhook_id: n for webhook_id, n in seen.items() if n > 1}
    assert twice == {}, f"{len(twice)} records delivered more than once"
    assert "revoking" in whole_log(first), "the first agent gave partitions up under load"
    for agent in (first, second):
        assert trouble(agent) == [], "\n".join(trouble(agent)[:20])
    timeouts = [len(HEARTBEAT_TIMEOUT.findall(whole_log(a))) for a in (first, second)]
    print(f"\n{len(every)} records, each delivered once; heartbeat time-outs logged: {timeouts}")
