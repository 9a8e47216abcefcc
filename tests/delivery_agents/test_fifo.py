"""FIFO subscriptions on the real stack (docs/ordering.md): per-key order at a receiver that
fails at random, through an agent SIGKILL and a rebalance; a halted key resumed or skipped by an
operator; a neighbour on the same partition flowing meanwhile; ``waiting_for`` in the status;
a halt and a back-off kept through an agent restart."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from schemas import parked, records
from schemas.topics import ATTEMPTS, PARKED, SUBSCRIPTIONS
from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import full_pipeline, ingest_record, produce_ingest, status_of
from tests.support.receiver import Receiver, Reply, serve
from tests.support.records import new_id, produce, subscription
from tests.support.topics import read, read_topic
from tests.support.waiting import eventually
from webhookmaster.settings import Settings

WAIT = 120.0


def fifo_subscription(settings: Settings, url: str, on_failure: str = "skip") -> str:
    """Produce a FIFO subscription record (as the gateway writes it) and return its id."""
    sub_id = new_id()
    record = {**subscription(sub_id, url), "ordering": "fifo", "on_failure": on_failure}
    produce(settings, [(SUBSCRIPTIONS, sub_id, record)])
    return sub_id


class OrderReceiver:
    """Answers 500 at random (at most twice per webhook, so every one ends delivered) and
    records, per ordering key, every request's sequence number and whether it succeeded."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.failures: dict[str, int] = defaultdict(int)
        self.requests: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        self.delivered: dict[str, set[int]] = defaultdict(set)
        self.violations: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        key, seq, webhook_id = body["key"], body["seq"], request.headers["webhook-id"]
        done = self.delivered[key]
        missing = [i for i in range(seq) if i not in done]
        if missing:  # an earlier webhook of its key has not succeeded yet
            self.violations.append(f"{key}: #{seq} requested before #{missing[0]} succeeded")
        fail = self.failures[webhook_id] < 2 and self.random.random() < 0.25
        if fail:
            self.failures[webhook_id] += 1
        else:
            done.add(seq)
        self.requests[key].append((seq, not fail))
        return web.Response(status=500 if fail else 200)

    def count(self) -> int:
        return sum(len(v) for v in self.delivered.values())

    async def start(self) -> OrderReceiver:
        self._runner, self.port = await serve(self.handle, "POST")
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return dataclasses.replace(settings, retry_ladder="0.2,0.2,0.2,0.2,0.2", topic_partitions=3)


async def test_order_per_key_through_sigkill_and_rebalance(
    fast: Settings, make_component: MakeComponent
) -> None:
    rx = await OrderReceiver(seed=15).start()
    try:
        url = f"http://127.0.0.1:{rx.port}/ordered"
        subs = [fifo_subscription(fast, url) for _ in range(3)]
        # 10 keys over the 3 partitions (each subscription's records on a partition of its
        # own), every key's webhooks interleaved with the others' on its partition
        keys = [(subs[i % 3], f"k{i}") for i in range(10)]
        per_key = 100
        batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for seq in range(per_key):
            for sub, key in keys:
                record = ingest_record(sub, payload={"key": f"{sub}/{key}", "seq": seq})
                batches[sub].append({**record, "ordering_key": key})
        agent = make_component("agent", fast)
        await agent.wait_ready()
        for partition, sub in enumerate(subs):
            produce_ingest(fast, *batches[sub], partition=partition)
        total = len(keys) * per_key
        assert await eventually(lambda: rx.count() >= total // 5, timeout=WAIT)
        agent.kill()  # SIGKILL mid-way
        killed_at = rx.count()
        assert killed_at < total, "the kill came too late to test anything"
        second = make_component("agent", fast)
        await second.wait_ready()
        assert await eventually(lambda: rx.count() >= killed_at + total // 5, timeout=WAIT)
        third = make_component("agent", fast)  # a rebalance between two agents
        await third.wait_ready()
        assert await eventually(
            lambda: third.metric("webhookmaster_delivery_attempts_total") > 0, timeout=WAIT
        ), "the third agent took over a partition"
        assert await eventually(lambda: rx.count() == total, timeout=WAIT, interval=0.2), (
            f"{rx.count()} of {total} delivered"
        )
        assert rx.violations == []
        for sub, key in keys:
            firsts: list[int] = []
            for seq, ok in rx.requests[f"{sub}/{key}"]:
                if ok and seq not in firsts:
                    firsts.append(seq)
            assert firsts == list(range(per_key)), f"{key}: {firsts}"
        retried = sum(rx.failures.values())
        print(f"\n{total} webhooks on 10 keys, {retried} failed attempts, killed at {killed_at}")
        await asyncio.gather(second.terminate(), third.terminate())
    finally:
        await rx.stop()


async def test_halted_key_resumes_and_skips_while_a_neighbour_flows(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.script("/fifo", *[Reply(500)] * 6, then=Reply(200))  # w1 fails its 6 attempts
    async with full_pipeline(settings) as gw:
        fifo = await gw.create_subscription(
            target_url=receiver.url("/fifo"), ordering="fifo", on_failure="halt"
        )
        assert (fifo["ordering"], fifo["on_failure"]) == ("fifo", "halt")
        neighbour = await gw.create_subscription(target_url=receiver.url("/neighbour"))
        ids = []
        for n in range(3):
            reply = await gw.ingest(fifo, orjson.dumps({"n": n}))
            ids.append(reply.json["id"])
        w1, w2, w3 = ids
        for n in range(20):
            assert (await gw.ingest(neighbour, orjson.dumps({"n": n}))).status == 202
        # the neighbour flows while the FIFO key fails and halts
        assert await receiver.wait_for(lambda: len(receiver.on("/neighbour")) == 20, WAIT)
        await status_of(gw, w1, lambda body: body["status"] == "FAILED", timeout=WAIT)
        waiting = await status_of(gw, w2, lambda body: body.get("waiting_for") == w1)
        assert waiting["status"] == "PENDING"
        assert set(receiver.ids("/fifo")) == {w1}  # halted: w2 never went
        assert await eventually(  # w2 and w3 parked behind the halted head
            lambda: REGISTRY.get_sample_value("webhookmaster_fifo_waiting") == 2
        )
        reply = await gw.call("POST", f"/api/webhooks/{w1}/resume/")
        assert reply.status == 202 and reply.json["command"] == "resume"
        assert await receiver.wait_for(lambda: w3 in receiver.ids("/fifo"), WAIT)
        order = [h.headers["webhook-id"] for h in receiver.on("/fifo")]
        assert order == [w1] * 7 + [w2, w3]
        await status_of(gw, w1, lambda body: body["status"] == "DELIVERED", timeout=WAIT)
        # halted again, then skipped: the next one goes, the skipped one is not tried again
        receiver.script("/fifo", *[Reply(500)] * 6, then=Reply(200))
        w4 = (await gw.ingest(fifo, b"{}")).json["id"]
        w5 = (await gw.ingest(fifo, b"{}")).json["id"]
        await status_of(gw, w4, lambda body: body["status"] == "FAILED", timeout=WAIT)
        assert (await gw.call("POST", f"/api/webhooks/{w4}/skip/")).status == 202
        assert await receiver.wait_for(lambda: w5 in receiver.ids("/fifo"), WAIT)
        assert receiver.ids("/fifo")[w4] == 6
        await status_of(gw, w5, lambda body: body["status"] == "DELIVERED", timeout=WAIT)


async def test_a_halt_survives_an_agent_restart_until_resumed(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    receiver.script("/halt", *[Reply(500)] * 6, then=Reply(200))
    sub = fifo_subscription(settings, receiver.url("/halt"), on_failure="halt")
    w1, w2 = ingest_record(sub), ingest_record(sub)
    produce_ingest(settings, w1, w2)
    agent = make_component("agent", settings)
    await agent.wait_ready()
    attempts = await read(settings, ATTEMPTS, 6, timeout=WAIT)
    assert [a["outcome"] for a in attempts] == ["retrying"] * 5 + ["failed"]
    assert await eventually(lambda: agent.metric("webhookmaster_fifo_waiting") == 1)
    agent.kill()
    again = make_component("agent", settings)  # replays the parked partition: still halted
    await again.wait_ready()
    assert await eventually(lambda: again.metric("webhookmaster_fifo_keys") == 1, timeout=WAIT)
    assert again.metric("webhookmaster_fifo_waiting") == 1
    assert set(receiver.ids("/halt")) == {w1["webhook_id"]}
    command = parked.command("resume", w1["webhook_id"])
    for partition in range(3):  # as the gateway's POST /api/webhooks/{id}/resume/ does
        produce(
            settings,
            [(PARKED, w1["webhook_id"], command)],
            partition,
            headers=[(parked.OP_HEADER, b"resume")],
        )
    assert await receiver.wait_for(lambda: w2["webhook_id"] in receiver.ids("/halt"), WAIT)
    order = [h.headers["webhook-id"] for h in receiver.on("/halt")]
    assert order == [w1["webhook_id"]] * 7 + [w2["webhook_id"]]
    await again.terminate()


async def test_a_heads_back_off_survives_an_agent_restart(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    # longer than the killed agent's partitions take to move (the broker's 10 s session)
    settings = dataclasses.replace(settings, retry_ladder="25,25,25,25,25")
    receiver.script("/backoff", Reply(500), then=Reply(200))
    sub = fifo_subscription(settings, receiver.url("/backoff"))
    w1, w2 = ingest_record(sub), ingest_record(sub)
    produce_ingest(settings, w1, w2)
    agent = make_component("agent", settings)
    await agent.wait_ready()
    [failed] = await read(settings, ATTEMPTS, 1, timeout=WAIT)
    assert failed["outcome"] == "retrying"
    parked_records = await read_topic(settings, PARKED, 3, timeout=WAIT)  # enq, enq, att
    assert dict(parked_records[2].headers())[parked.OP_HEADER] == b"att"
    agent.kill()  # during the head's back-off
    again = make_component("agent", settings)
    await again.wait_ready()
    assert await receiver.wait_for(lambda: w2["webhook_id"] in receiver.ids("/backoff"), WAIT)
    hits = receiver.on("/backoff")
    assert [h.headers["webhook-id"] for h in hits] == [w1["webhook_id"]] * 2 + [w2["webhook_id"]]
    due = records.parse_time(failed["next_attempt_at"]).timestamp()
    assert hits[1].at >= due - 0.05, "the new agent kept the ladder's delay"
    await again.terminate()
