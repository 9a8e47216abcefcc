"""One agent owns a subscription on both paths (ingest and due), on the real stack: the due
partitions an agent reads mirror its ingest assignment through rebalances, the rate limit holds
with two agents while retries come back through the due topic, and a breaker opened by one
agent stays open under the agent that takes the subscription over."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

from delivery_agents.agent import Agent
from schemas import records
from schemas.topics import ATTEMPTS, CIRCUITS, DUE, SUBSCRIPTIONS
from tests.support import records as test_records
from tests.support.pipeline import ingest_record, produce_ingest, running
from tests.support.receiver import Receiver, Reply
from tests.support.topics import read
from webhookmaster.kafka_clients import AsyncProducer, producer_config
from webhookmaster.partitioning import partition_for
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import SubscriptionTable

WAIT = 60.0


def subscription_on(
    settings: Settings, partition: int, url: str, rate_limit: float | None = None
) -> str:
    """A subscription whose id the partitioner puts on ``partition``; its id."""
    while True:
        sub_id = test_records.new_id()
        if partition_for(sub_id, settings.topic_partitions) == partition:
            break
    record = test_records.subscription(sub_id, url)
    record["rate_limit"] = rate_limit
    test_records.produce(settings, [(SUBSCRIPTIONS, sub_id, record)])
    return sub_id


class Running:
    """An agent run in this event loop, with its parts reachable."""

    def __init__(self, settings: Settings) -> None:
        self.table = SubscriptionTable(settings)
        self.producer = AsyncProducer(producer_config(settings))
        self.agent = Agent(settings, self.table, self.producer)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.table.start()
        assert await asyncio.to_thread(self.table.wait_loaded, 30)
        self.task = asyncio.create_task(self.agent.run())

    async def stop(self) -> None:
        self.agent.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 60)
        await asyncio.to_thread(self.producer.close)
        self.table.close()

    def ingest(self) -> set[int]:
        return {p for _t, p in self.agent.consumer.assigned}

    def due(self) -> set[int]:
        return {p for _t, p in self.agent.due_consumer.assigned}


@contextlib.asynccontextmanager
async def agent(settings: Settings) -> AsyncIterator[Running]:
    one = Running(settings)
    await one.start()
    try:
        yield one
    finally:
        if one.task is not None and not one.task.done():
            await one.stop()


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def mirrored(*agents: Running, partitions: int) -> bool:
    """Every ingest partition owned by exactly one agent, each agent's due partitions = its
    ingest partitions."""
    owned = [a.ingest() for a in agents]
    return (
        sum(len(o) for o in owned) == partitions
        and set().union(*owned) == set(range(partitions))
        and all(a.due() == a.ingest() for a in agents)
    )


def due_records(settings: Settings, subs: list[str], tag: str) -> list[str]:
    """One retry per subscription handed back on the due topic (keyed by the subscription, as
    the scheduler does); the webhook ids."""
    items = []
    for sub_id in subs:
        record = ingest_record(sub_id, {"tag": tag})
        record["attempt"] = 1
        items.append((DUE, sub_id, record))
    test_records.produce(settings, items)
    return [value["webhook_id"] for _, _, value in items]


async def test_due_assignment_mirrors_ingest_through_rebalances(
    settings: Settings, receiver: Receiver
) -> None:
    """A alone reads every due partition; B joins: each reads the due partitions of its own
    ingest partitions (A forgets the breakers of the partitions it gave up) and delivers the
    retries of the subscriptions there; B leaves: A reads them all again, from the committed due
    offsets (nothing delivered is redone)."""
    n = settings.topic_partitions
    subs = [subscription_on(settings, p, receiver.url(f"/p{p}")) for p in range(n)]
    async with agent(settings) as a:
        await until(lambda: mirrored(a, partitions=n), "A alone never read every partition")
        alone = due_records(settings, subs, "alone")
        assert await receiver.wait_for(lambda: len(receiver.hits) == n, WAIT)
        assert set(a.agent.breakers.breakers) == set(subs)
        async with agent(settings) as b:
            await until(
                lambda: bool(b.ingest()) and mirrored(a, b, partitions=n),
                "the due assignment never mirrored the ingest one after B joined",
            )
            # A forgot the breakers of the subscriptions whose partitions moved to B
            await until(
                lambda: set(a.agent.breakers.breakers) == {subs[p] for p in a.ingest()},
                "A kept the breakers of partitions it gave up",
            )
            first = due_records(settings, subs, "first")
            assert await receiver.wait_for(lambda: len(receiver.hits) == 2 * n, WAIT)
            # each agent delivered the retries of its own partitions' subscriptions
            for one in (a, b):
                noted = set(one.agent.due_mirror._owners)
                assert noted == {subs[p] for p in one.ingest()}, (one.ingest(), noted)
            b_partitions = b.ingest()
        await until(lambda: mirrored(a, partitions=n), "A never took B's partitions back")
        second = due_records(settings, subs, "second")
        assert await receiver.wait_for(lambda: len(receiver.hits) == 3 * n, WAIT)
        attempts = await read(settings, ATTEMPTS, 3 * n)
    assert b_partitions and b_partitions != set(range(n))
    # the due offsets committed under the offsets-only group held: nothing was redone
    ids = Counter(h.headers["webhook-id"] for h in receiver.hits)
    assert ids == Counter(alone + first + second)
    assert sorted(a["attempt_number"] for a in attempts) == [2] * (3 * n)


RATE = 20.0
WINDOW_S = 30.0


async def test_rate_limit_holds_with_retries_through_due(
    settings: Settings, receiver: Receiver
) -> None:
    """Two agents; one subscription at 20/s; a third of the first attempts fail, so retries
    come back on the due topic beside the fresh backlog. The receiver sees the limit: 30 s
    within 10 %, and 1 s windows within 10 % (all but the odd window: agents and receiver
    share this process's event loop, and a stall of it on a busy machine bunches requests at
    the receiver)."""
    n = settings.topic_partitions
    sub_id = subscription_on(settings, 0, receiver.url("/paced"), rate_limit=RATE)
    fresh = int(RATE * WINDOW_S)  # with the retries: 37.5 s of load at the limit
    failing = fresh // 4
    receiver.script("/paced", *[Reply(500), Reply(200), Reply(200)] * failing)
    async with running(settings, agents=2):
        # both agents hold partitions before the load starts: no rebalance in the window
        # (the test's settings use one-second retry tiers)
        deadline = time.monotonic() + WAIT
        while len(await asyncio.to_thread(_owners, settings)) < 2:
            assert time.monotonic() < deadline, "two agents never owned partitions"
            await asyncio.sleep(0.2)
        produce_ingest(settings, *[ingest_record(sub_id) for _ in range(fresh)])
        total = fresh + failing
        assert await receiver.wait_for(lambda: len(receiver.on("/paced")) >= total, WINDOW_S * 4), (
            len(receiver.on("/paced"))
        )
        attempts = await read(settings, ATTEMPTS, total, timeout=WAIT)
    hits = sorted(h.at for h in receiver.on("/paced"))
    assert len(hits) == total
    start = hits[0]
    in_window = sum(1 for at in hits if at < start + WINDOW_S)
    seconds = [
        sum(1 for at in hits if start + s <= at < start + s + 1) for s in range(int(WINDOW_S))
    ]
    close = sum(1 for c in seconds if abs(c - RATE) <= 0.1 * RATE)
    print(
        f"rate limit {RATE:g}/s with retries via due, 2 agents, {n} partitions: "
        f"{in_window} requests in {WINDOW_S:g} s; per second {seconds}"
    )
    assert abs(in_window - RATE * WINDOW_S) <= 0.1 * RATE * WINDOW_S, in_window
    assert close >= 0.9 * len(seconds), seconds
    outcomes = Counter(a["outcome"] for a in attempts)
    assert outcomes == {"delivered": fresh, "retrying": failing}
    assert sum(1 for a in attempts if a["attempt_number"] == 2) == failing  # retries via due


def _owners(settings: Settings) -> list[str]:
    from delivery_agents.agent import GROUP_ID
    from webhookmaster.kafka_clients import admin_client

    admin = admin_client(settings)
    group = settings.group(GROUP_ID)
    found = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    return [m.member_id for m in found.members if m.assignment.topic_partitions]


COOLDOWN_S = 6.0


async def test_breaker_open_survives_takeover(settings: Settings, receiver: Receiver) -> None:
    """Agent A opens the breaker (three failures) and stops; agent B takes the subscription
    over: it keeps the breaker open until the cool-down counted from A's ``since``, probes
    once (fails: open again), probes once more a cool-down later (closes), then delivers the
    last webhook (the failed probe waits in its retry tier: no scheduler here)."""
    settings = dataclasses.replace(
        settings, breaker_failures=3, breaker_ratio=1.0, breaker_cooldown_s=COOLDOWN_S
    )
    sub_id = subscription_on(settings, 0, receiver.url("/cb"))
    receiver.script("/cb", *[Reply(500)] * 4)  # three failures, then B's first probe fails
    async with running(settings, scheduler=False):  # agent A
        produce_ingest(settings, *[ingest_record(sub_id) for _ in range(3)])
        [opened] = await read(settings, CIRCUITS, 1)
        assert opened["circuit"] == "open"
    assert len(receiver.on("/cb")) == 3
    later = [ingest_record(sub_id) for _ in range(3)]
    async with running(settings, scheduler=False):  # agent B, a new process's agent
        produce_ingest(settings, *later)
        changes = await read(settings, CIRCUITS, 5, timeout=WAIT)
        assert await receiver.wait_for(lambda: len(receiver.on("/cb")) == 3 + 3, WAIT)
    hits = receiver.on("/cb")
    # B published no new "open" of its own first: it took A's state over
    assert [c["circuit"] for c in changes] == ["open", "half_open", "open", "half_open", "closed"]
    opened_at = records.parse_time(opened["since"]).timestamp()
    reopened_at = records.parse_time(changes[2]["since"]).timestamp()
    assert hits[3].at >= opened_at + COOLDOWN_S * 0.95, hits[3].at - opened_at
    assert hits[4].at >= reopened_at + COOLDOWN_S * 0.95, hits[4].at - reopened_at
    closed_at = records.parse_time(changes[4]["since"]).timestamp()
    assert all(h.at >= closed_at - 0.05 for h in hits[5:])
