"""Chaos: load through the whole pipeline (gateway, delivery agent, retry scheduler and status
projector as real processes, a real receiver that fails some first attempts) while the agent,
the scheduler and the projector are SIGKILLed and restarted and the broker is restarted once.
Afterwards: nothing accepted is lost or altered, every status is final and right, the attempt
history matches what the receiver saw, and every consumer group committed every record.

One run (the module fixture, a few minutes) feeds the checks, one test each, so a report names
every property that does not hold. The fault schedule is triggered by the load's progress and
the payloads and failures are seeded, so a run is the same sequence each time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from delivery_agents.agent import GROUP_ID as AGENT_GROUP
from devstack import kafka_broker
from retry_scheduler.scheduler import GROUP_ID as SCHEDULER_GROUP
from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST, SUBSCRIPTIONS
from status_projector.consumer import group_id as projector_group
from tests.support.chaos import (
    Accepted,
    ChaosReceiver,
    Item,
    Load,
    offset_gaps,
    payload,
)
from tests.support.env import TEST_ENV, clean_env
from tests.support.processes import ComponentProcess
from tests.support.topics import read_to_end
from tests.support.waiting import eventually
from webhookmaster import retry_ladder
from webhookmaster import settings as settings_mod
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import Settings

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

SEED = 20261128
N_INGEST = 1200  # webhooks ingested one by one over HTTP, spread over the subscriptions
N_EVENTS = 40  # fan-out events, each one webhook per subscription
SUBSCRIPTIONS_N = 4
RATE = 25.0  # items sent per second: the load lasts ~50 s, long enough for every fault
WORKERS = 8
EVENT_TYPE = "chaos.test"
MAX_IN_FLIGHT = 8  # per agent; bounds what one agent kill can leave unrecorded (see below)
LADDER = "1,1,1,1,1"
# A POST's outcome can go unrecorded only when the agent that sent it dies before Kafka
# acknowledged the outcome: POSTs the receiver got from EXPOSURE_S before an agent kill to
# MARGIN_S after it (the receiver may read a request a little after the sender died) are
# "exposed". EXPOSURE_S is far above the time from a request to its acknowledged outcome with
# the broker up (milliseconds); no agent kill is scheduled while the broker is away.
EXPOSURE_S = 20.0
MARGIN_S = 5.0
TRIGGER_S = 150.0  # bound of each wait for a fault's trigger
SETTLE_S = 150.0  # bound of each wait for the end state once the faults stopped


@dataclass
class Run:
    """What the chaos run saw, for the checks."""

    settings: Settings
    accepted: dict[str, Accepted]
    given_up: list[int]
    refused: list[str]
    posts: dict[str, list[Any]]  # webhook id -> receiver Posts, in arrival order
    delivered: set[str]  # ids the receiver answered 2xx
    statuses: dict[str, asyncpg.Record]
    rows: Counter[str]  # delivery_attempts rows per webhook id
    events: dict[str, set[Any]]  # distinct attempt events on the attempts topic, per id
    gaps: list[str]  # partitions with a committed offset below the high watermark
    agent_kills: list[float] = field(default_factory=list)  # time.time() of each SIGKILL
    faults: list[str] = field(default_factory=list)  # what was done, in order
    problems: list[str] = field(default_factory=list)  # faults not triggered, exits, ...
    seconds: dict[str, float] = field(default_factory=dict)


class Stack:
    """The four components as processes; a killed one is replaced by a new process."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.live: dict[str, ComponentProcess] = {}
        self.all: list[ComponentProcess] = []

    def start(self, name: str) -> ComponentProcess:
        log = self.log_dir / f"{name}-{sum(c.name == name for c in self.all)}.log"
        component = ComponentProcess(name, self.settings, log).start()
        self.live[name] = component
        self.all.append(component)
        return component

    def kill_and_restart(self, name: str) -> ComponentProcess:
        self.live[name].kill()
        return self.start(name)

    async def wait_ready(self, timeout: float = 120) -> None:
        await asyncio.gather(*(c.wait_ready(timeout) for c in self.live.values()))

    async def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for name, component in self.live.items():
            try:
                codes[name] = await component.terminate(60)
            except Exception:
                codes[name] = None
        for component in self.all:
            component.ensure_stopped()
        return codes

    def logs(self, name: str) -> str:
        return "\n".join(
            f"--- {c.log_path.name}\n{c.log_path.read_text(errors='replace')[-1500:]}"
            for c in self.all
            if c.name == name
        )


def isolated_settings(base: Settings) -> Settings:
    """Like the ``wm_settings`` fixture (own topic prefix and schema), for a module fixture."""
    tag = uuid.uuid4().hex[:10]
    settings = settings_mod.load(
        clean_env(**TEST_ENV), topic_prefix=f"c{tag}.", db_schema=f"c_{tag}"
    )
    return dataclasses.replace(
        settings,
        allowed_cidrs="127.0.0.0/8",
        retry_ladder=LADDER,
        max_in_flight=MAX_IN_FLIGHT,
        max_in_flight_per_subscription=MAX_IN_FLIGHT,
    )


def plan(subs: list[dict[str, Any]]) -> list[Item]:
    """The load: seeded bodies, ingests round-robin over the subscriptions, a fan-out event
    after every 30 ingests."""
    rng = random.Random(SEED)
    items = []
    seq = 0
    every = N_INGEST // N_EVENTS
    for i in range(N_INGEST):
        seq += 1
        items.append(Item(seq, "ingest", subs[i % len(subs)], payload(rng, seq)))
        if (i + 1) % every == 0:
            seq += 1
            items.append(Item(seq, "event", None, payload(rng, seq)))
    return items


async def create_subscriptions(url: str, receiver: ChaosReceiver) -> list[dict[str, Any]]:
    subs = []
    async with aiohttp.ClientSession() as session:
        for k in range(SUBSCRIPTIONS_N):
            body = {
                "target_url": receiver.url(f"/s{k}"),
                "event_types": [] if k % 2 == 0 else [EVENT_TYPE, "other.type"],
            }
            async with session.post(f"{url}/api/subscriptions/", json=body) as resp:
                assert resp.status == 201, await resp.text()
                subs.append(await resp.json())
    return subs


def restart_broker(settings: Settings) -> None:
    assert kafka_broker.stop(settings), "the session broker was not running"
    kafka_broker.start(settings)


async def inject_faults(stack: Stack, load: Load, receiver: ChaosReceiver, run: Run) -> None:
    """The fault schedule, each step triggered by the load's progress (bounded waits)."""
    total = len(load.items)

    async def at(fraction: float, what: str) -> bool:
        if await load.wait_items(int(total * fraction), TRIGGER_S):
            return True
        run.problems.append(
            f"fault '{what}' never triggered: {load.result.items_done} of "
            f"{total} items done after {TRIGGER_S:.0f} s"
        )
        return False

    def kill(name: str) -> None:
        if name == "agent":
            run.agent_kills.append(time.time())
        stack.kill_and_restart(name)
        run.faults.append(f"SIGKILL {name} at {load.result.items_done} items")

    if await at(0.15, "agent kill 1"):
        kill("agent")
    if await at(0.30, "scheduler kill 1"):
        kill("scheduler")
    if await at(0.40, "projector kill 1"):
        kill("projector")
    if await at(0.50, "broker restart"):
        started = time.monotonic()
        await asyncio.to_thread(restart_broker, stack.settings)
        run.seconds["broker restart"] = time.monotonic() - started
        run.faults.append(f"broker restarted at {load.result.items_done} items")
    # the second agent kill comes once deliveries flow again after the broker restart
    flowing = len(receiver.delivered) + 50
    if await at(0.70, "agent kill 2"):
        if await receiver.wait_for(lambda: len(receiver.delivered) >= flowing, TRIGGER_S):
            kill("agent")
        else:
            run.problems.append(
                f"deliveries did not resume after the broker restart: "
                f"{len(receiver.delivered)} delivered, waited for {flowing}"
            )
    if await at(0.85, "scheduler and projector kill 2"):
        kill("scheduler")
        kill("projector")


def read_attempt_events(settings: Settings) -> dict[str, set[Any]]:
    """Every record of the attempts topic, read up to the high watermarks: the distinct
    published outcomes per webhook id (an identical record published twice counts once)."""
    events: dict[str, set[Any]] = {}
    for msg in read_to_end(settings, settings.topic(ATTEMPTS)):
        event = orjson.loads(msg.value())
        key = event.get("attempt_id") or (event["attempt_number"], event["started_at"])
        events.setdefault(event["webhook_id"], set()).add((key, event.get("status_code")))
    return events


def groups(settings: Settings) -> dict[str, list[str]]:
    """Each component's consumer group and the topics it consumes."""
    tiers = [t.topic for t in retry_ladder.tiers(settings.topic_prefix, settings.retry_ladder)]
    return {
        settings.group(AGENT_GROUP): [settings.topic(INGEST)],
        settings.group(SCHEDULER_GROUP): tiers,
        projector_group(settings): [
            settings.topic(s) for s in (INGEST, ATTEMPTS, DEAD_LETTER, SUBSCRIPTIONS)
        ],
    }


async def all_gaps(settings: Settings) -> list[str]:
    gaps = []
    for group, topics in groups(settings).items():
        gaps += await asyncio.to_thread(offset_gaps, settings, group, topics)
    return gaps


async def read_statuses(conn: asyncpg.Connection, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT id, status, delivered_at, attempt_count FROM webhooks WHERE id = ANY($1::text[])",
        ids,
    )
    return {r["id"]: r for r in rows}


@pytest.fixture(scope="module")
async def chaos(
    base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    settings = isolated_settings(base_settings)
    topics_admin.ensure_topics(settings)
    await migrate.migrate_url(settings.dsn, settings.db_schema)
    log_dir = tmp_path_factory.mktemp("chaos")
    receiver = await ChaosReceiver().start()
    stack = Stack(settings, log_dir)
    conn = await asyncpg.connect(settings.dsn, server_settings={"search_path": settings.db_schema})
    t0 = time.monotonic()
    try:
        gateway = stack.start("gateway")
        await gateway.wait_ready(120)
        url = f"http://127.0.0.1:{gateway.port}"
        subs = await create_subscriptions(url, receiver)
        for name in ("agent", "scheduler", "projector"):  # their tables hold the subscriptions
            stack.start(name)
        await stack.wait_ready()
        started = time.monotonic()
        load = Load(url, plan(subs), RATE, WORKERS, EVENT_TYPE, {s["id"]: s for s in subs})
        load_task = asyncio.create_task(load.run())
        run = Run(settings, {}, [], [], {}, set(), {}, Counter(), {}, [])
        await inject_faults(stack, load, receiver, run)
        result = await asyncio.wait_for(load_task, 300)
        run.seconds["load"] = time.monotonic() - started
        run.accepted, run.given_up, run.refused = result.accepted, result.given_up, result.refused
        await stack.wait_ready()

        # the end state, each wait bounded: what is not reached then is reported by the checks
        ids = list(run.accepted)
        settle = time.monotonic()
        await receiver.wait_for(lambda: receiver.delivered >= set(ids), SETTLE_S)
        run.seconds["receiver settled"] = time.monotonic() - settle
        await eventually(lambda: _no_gaps(settings), timeout=SETTLE_S, interval=1.0)
        run.gaps = await all_gaps(settings)
        run.seconds["offsets settled"] = time.monotonic() - settle

        async def statuses_final() -> bool:
            run.statuses = await read_statuses(conn, ids)
            return all(r["status"] == "DELIVERED" for r in run.statuses.values()) and len(
                run.statuses
            ) == len(ids)

        await eventually(statuses_final, timeout=SETTLE_S, interval=0.5)
        run.seconds["statuses settled"] = time.monotonic() - settle
        for row in await conn.fetch(
            "SELECT webhook_id, count(*) AS n FROM delivery_attempts "
            "WHERE webhook_id = ANY($1::text[]) GROUP BY webhook_id",
            ids,
        ):
            run.rows[row["webhook_id"]] = row["n"]
        run.events = await asyncio.to_thread(read_attempt_events, settings)
        run.posts = {k: list(v) for k, v in receiver.by_id.items()}
        run.delivered = set(receiver.delivered)
        codes = await stack.stop()
        run.problems += [
            f"{name} exited {code} on SIGTERM" for name, code in codes.items() if code != 0
        ]
        run.seconds["total"] = time.monotonic() - t0
        print(
            f"\nchaos: {len(ids)} webhooks accepted, {len(receiver.posts)} POSTs, "
            f"{sum(len(v) for v in run.events.values())} attempts published, "
            f"{sum(run.rows.values())} attempt rows, "
            f"faults: {'; '.join(run.faults)}; seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in run.seconds.items())
        )
        yield run
    finally:
        await stack.stop()
        await receiver.stop()
        await conn.execute(
            f"DROP SCHEMA IF EXISTS {migrate.quote_ident(settings.db_schema)} CASCADE"
        )
        await conn.close()
        if kafka_broker.responds(settings, timeout=30):
            topics_admin.delete_topics(settings)


async def _no_gaps(settings: Settings) -> bool:
    return not await all_gaps(settings)


def _sample(items: list[str], n: int = 15) -> str:
    return "\n  ".join(items[:n]) + (f"\n  ... and {len(items) - n} more" if len(items) > n else "")


def test_every_fault_was_injected(chaos: Run) -> None:
    assert not chaos.problems, "\n".join(chaos.problems)
    assert len(chaos.agent_kills) == 2 and len(chaos.faults) == 7, chaos.faults


def test_nothing_accepted_is_lost_or_altered(chaos: Run) -> None:
    assert not chaos.given_up, (
        f"{len(chaos.given_up)} items never accepted: "
        f"{chaos.given_up[:20]}; last refusals: {chaos.refused[-5:]}"
    )
    assert len(chaos.accepted) == N_INGEST + N_EVENTS * SUBSCRIPTIONS_N
    lost = [i for i in chaos.accepted if i not in chaos.posts]
    assert not lost, f"{len(lost)} accepted webhooks never reached the receiver:\n  " + _sample(
        [f"{i} (seq {chaos.accepted[i].seq}, {chaos.accepted[i].kind})" for i in lost]
    )
    altered = []
    for webhook_id, accepted in chaos.accepted.items():
        for post in chaos.posts[webhook_id]:
            if post.body is None:
                continue  # its sender went away mid-request
            same = (
                post.body == accepted.body
                if accepted.kind == "ingest"
                else json.loads(post.body) == json.loads(accepted.body)
            )
            if not same:
                altered.append(
                    f"{webhook_id} ({accepted.kind}): accepted {accepted.body!r}, "
                    f"delivered {post.body!r}"
                )
    assert not altered, (
        f"{len(altered)} POSTs whose body differs from the bytes accepted "
        "(ingest: byte for byte; fan-out: the same JSON):\n  " + _sample(altered, 5)
    )


def test_statuses_are_final_and_right(chaos: Run) -> None:
    undelivered = [i for i in chaos.accepted if i not in chaos.delivered]
    assert not undelivered, (
        f"{len(undelivered)} webhooks the receiver never answered 2xx:\n  " + _sample(undelivered)
    )
    wrong = []
    for webhook_id in chaos.accepted:
        row = chaos.statuses.get(webhook_id)
        if row is None:
            wrong.append(f"{webhook_id}: no row in webhooks")
        elif row["status"] != "DELIVERED" or row["delivered_at"] is None:
            wrong.append(
                f"{webhook_id}: {row['status']}, delivered_at {row['delivered_at']}, "
                f"{row['attempt_count']} attempts; receiver answered "
                f"{[p.status for p in chaos.posts.get(webhook_id, [])]}"
            )
    assert not wrong, (
        f"{len(wrong)} of {len(chaos.accepted)} webhooks without the final "
        "status DELIVERED although the receiver answered 2xx:\n  " + _sample(wrong)
    )


def test_attempt_history_matches_the_receiver(chaos: Run) -> None:
    """Attempts as they happened. Ground truth on two sides: the receiver's POSTs and the
    outcomes the agents published (the attempts topic, read to its end).

    - every published outcome is one row (the projector records each attempt, a duplicate
      request after a crash included, and overwrites none);
    - no more published outcomes than POSTs (each outcome is a request that arrived);
    - a POST without a published outcome was exposed to an agent kill (the agent died before
      Kafka acknowledged that outcome; see EXPOSURE_S);
    - in all, at most kills x 4 x WM_MAX_IN_FLIGHT POSTs are unrecorded: an agent holds at
      most 4 x max_in_flight records (delivering or publishing), one request each.
    """

    def exposed(post: Any) -> bool:
        return any(k - EXPOSURE_S <= post.at <= k + MARGIN_S for k in chaos.agent_kills)

    wrong = []
    unrecorded = 0
    for webhook_id in chaos.accepted:
        posts = chaos.posts.get(webhook_id, [])
        events = len(chaos.events.get(webhook_id, ()))
        rows = chaos.rows.get(webhook_id, 0)
        seen = f"POSTs answered {[p.status for p in posts]}, {events} published, {rows} rows"
        if rows != events:
            wrong.append(f"{webhook_id}: rows differ from published attempts: {seen}")
        if events > len(posts):
            wrong.append(f"{webhook_id}: more attempts than requests: {seen}")
        if len(posts) - events > sum(map(exposed, posts)):
            wrong.append(
                f"{webhook_id}: requests without an outcome away from any agent kill: {seen}"
            )
        unrecorded += max(0, len(posts) - rows)
    bound = len(chaos.agent_kills) * 4 * MAX_IN_FLIGHT
    assert not wrong, (
        f"{len(wrong)} webhooks whose attempt history is not what happened:\n  " + _sample(wrong)
    )
    assert unrecorded <= bound, f"{unrecorded} POSTs without an attempt row (bound {bound})"


def test_no_partition_is_left_behind(chaos: Run) -> None:
    assert not chaos.gaps, (
        "committed offsets still below the high watermark "
        f"{SETTLE_S:.0f} s after the load:\n  " + _sample(chaos.gaps)
    )
