"""Pieces of the chaos test (tests/pipeline/test_chaos.py): a receiver that fails some first
attempts and records every POST, a paced load client for the gateway, deterministic payloads,
and the committed-offset check of a consumer group."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from schemas import records
from tests.support.receiver import Receiver
from webhookmaster import signing
from webhookmaster.kafka_clients import client_config
from webhookmaster.settings import Settings

SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')


# ---------------------------------------------------------------------------------------------
# payloads


def payload(rng: random.Random, seq: int) -> bytes:
    """A JSON body that re-serialisation would change: key order (z before a), extra and odd
    whitespace, a float with a trailing zero, a unicode escape, a nested array."""
    z = rng.randint(0, 10**9)
    tag = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 12)))
    return (
        f'{{"seq": {seq},  "z": {z},\t"a": [1, 2.50, {{"k" : "v"}}],\n "s": "caf\\u00e9 {tag}"  }}'
    ).encode()


def seq_of(body: bytes | None) -> int | None:
    """The ``seq`` a body carries (whatever its serialisation), or None."""
    match = SEQ.search(body or b"")
    return int(match.group(1)) if match else None


def failures_for(seq: int) -> int:
    """How many first POSTs of a webhook carrying ``seq`` the receiver fails: every 5th seq
    once, every 25th twice (so some webhooks climb two tiers of the ladder)."""
    if seq % 25 == 0:
        return 2
    return 1 if seq % 5 == 0 else 0


# ---------------------------------------------------------------------------------------------
# receiver


@dataclass
class Post:
    webhook_id: str
    path: str
    body: bytes | None  # None when the body could not be read (the sender went away)
    at: float  # time.time() when the request arrived
    status: int = 0  # what the receiver answered (0: not answered)


class ChaosReceiver(Receiver):
    """A real HTTP receiver on 127.0.0.1: records every POST when it arrives (before reading
    its body), answers 500/503 to the first POSTs of a webhook as :func:`failures_for` says
    (by the ``seq`` in its body), 200 otherwise; ``wait_for`` re-checks at every answer."""

    METHOD = "POST"

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Post] = []
        self.by_id: defaultdict[str, list[Post]] = defaultdict(list)
        self.delivered: set[str] = set()  # ids answered 2xx at least once

    async def _handle(self, request: web.Request) -> web.Response:
        webhook_id = request.headers.get("webhook-id", "")
        post = Post(webhook_id, request.path, None, time.time())
        self.posts.append(post)
        self.by_id[webhook_id].append(post)
        post.body = await request.read()
        seq = seq_of(post.body)
        earlier = len(self.by_id[webhook_id]) - 1
        fail = seq is not None and earlier < failures_for(seq)
        post.status = (503 if earlier else 500) if fail else 200
        if post.status == 200:
            self.delivered.add(webhook_id)
        async with self._changed:
            self._changed.notify_all()
        return web.Response(status=post.status, text="no" if fail else "ok")


# ---------------------------------------------------------------------------------------------
# load


@dataclass
class Accepted:
    webhook_id: str
    seq: int
    body: bytes  # the bytes the gateway accepted (ingest), or the event's payload bytes
    kind: str  # "ingest" or "event"
    subscription_id: str


@dataclass
class LoadResult:
    accepted: dict[str, Accepted] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # answers other than 202 (kept tries)
    given_up: list[int] = field(default_factory=list)  # seqs never accepted
    items_done: int = 0


@dataclass
class Item:
    seq: int
    kind: str  # "ingest": one webhook; "event": a fan-out
    sub: dict[str, Any] | None  # the subscription (ingest)
    body: bytes


@dataclass
class Load:
    """Sends ``items`` to the gateway at ``rate`` per second with ``workers`` concurrent
    clients; an item answered otherwise than 202 (the broker away: 503) is tried again, for at
    most ``give_up_s``. Progress is in :attr:`result`."""

    url: str
    items: list[Item]
    rate: float
    workers: int
    event_type: str
    fanout_subs: dict[str, dict[str, Any]]
    give_up_s: float = 120.0
    result: LoadResult = field(default_factory=LoadResult)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)

    async def wait_items(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` items are done (accepted or given up), at most ``timeout``."""
        async with self._progress:
            try:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: self.result.items_done >= count), timeout
                )
            except TimeoutError:
                return False
        return True

    async def run(self) -> LoadResult:
        queue: asyncio.Queue[tuple[int, Item]] = asyncio.Queue()
        for index, item in enumerate(self.items):
            queue.put_nowait((index, item))
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(
                *(self._worker(session, queue, started) for _ in range(self.workers))
            )
        return self.result

    async def _worker(
        self, session: aiohttp.ClientSession, queue: asyncio.Queue[tuple[int, Item]], started: float
    ) -> None:
        while not queue.empty():
            index, item = queue.get_nowait()
            due = started + index / self.rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            await self._send(session, item)
            async with self._progress:
                self.result.items_done += 1
                self._progress.notify_all()

    async def _send(self, session: aiohttp.ClientSession, item: Item) -> None:
        give_up = time.monotonic() + self.give_up_s
        while True:
            status, answer = await self._post(session, item)
            if status == 202:
                self._accepted(item, answer)
                return
            self.result.refused.append(f"seq {item.seq}: {status} {answer!r:.200}")
            if time.monotonic() > give_up or status not in (0, 500, 502, 503, 504):
                self.result.given_up.append(item.seq)
                return
            await asyncio.sleep(0.5)

    async def _post(self, session: aiohttp.ClientSession, item: Item) -> tuple[int, Any]:
        if item.kind == "ingest":
            assert item.sub is not None
            url = f"{self.url}/api/ingest/{item.sub['id']}/"
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signing.hub_signature(item.sub["secret_key"], item.body),
            }
            params = {"event_type": self.event_type}
            data = item.body
        else:
            url, headers, params = (
                f"{self.url}/api/events/",
                {"Content-Type": "application/json"},
                {},
            )
            data = (
                b'{"event_type": "'
                + self.event_type.encode()
                + b'", "payload": '
                + item.body
                + b"}"
            )
        try:
            async with session.post(url, data=data, headers=headers, params=params) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return 0, repr(exc)

    def _accepted(self, item: Item, answer: dict[str, Any]) -> None:
        if item.kind == "ingest":
            assert item.sub is not None
            self.result.accepted[answer["id"]] = Accepted(
                answer["id"], item.seq, item.body, "ingest", item.sub["id"]
            )
            return
        # a fan-out's webhook ids derive from the event id and each subscription's id
        for sub_id in self.fanout_subs:
            webhook_id = records.derived_id(answer["event_id"], sub_id)
            self.result.accepted[webhook_id] = Accepted(
                webhook_id, item.seq, item.body, "event", sub_id
            )


# ---------------------------------------------------------------------------------------------
# committed offsets


def offset_gaps(settings: Settings, group: str, topics: list[str]) -> list[str]:
    """Partitions of ``topics`` whose committed offset for ``group`` is below the high
    watermark, as readable lines (empty: every record is committed)."""
    consumer = Consumer(
        client_config(
            settings,
            {
                "group.id": group,
                "enable.auto.commit": False,
                "log_level": 3,
            },
        )
    )
    gaps = []
    try:
        metadata = consumer.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(metadata.topics[t].partitions)]
        for tp in consumer.committed(tps, timeout=10):
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            committed = tp.offset if tp.offset >= 0 else 0
            if committed < high:
                gaps.append(
                    f"{group} {tp.topic}[{tp.partition}]: committed "
                    f"{tp.offset if tp.offset >= 0 else 'none'} < high watermark {high}"
                )
    finally:
        consumer.close()
    return gaps
