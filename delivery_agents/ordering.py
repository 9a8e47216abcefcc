"""FIFO delivery per subscription and ordering key (docs/ordering.md).

A webhook of a FIFO subscription is not delivered from the ingest topic: :meth:`Ordering.park`
writes it to the parked topic (same partition number as its ingest record) and the ingest
offset is committed like any other. The agent that owns an ingest partition also reads the
parked partition of that number (:class:`ParkedReader`), rebuilds every key's queue from it
(:class:`delivery_agents.fifo_log.PartitionLog`) and delivers each key's head, one at a time:
the head's retries wait here, on the ladder's delays (they never go to the retry topics), and
each step is written back to the parked partition (``att``, ``end``, ``halt``) before the next
one, so that an agent that takes the partition over resumes where it stopped. Only the heads
are delivered; the webhooks behind them stay in Kafka (memory: an offset and an id each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from delivery_agents.fifo_log import PartitionLog
from delivery_agents.shares import URGENT
from schemas import parked, records
from schemas.records import Webhook
from schemas.topics import PARKED
from webhookmaster.kafka_clients import (
    AsyncProducer,
    ProduceError,
    consumer_config,
    record_headers,
    record_offset,
    record_tp,
)
from webhookmaster.offsets import Partition
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import SubscriptionTable

log = logging.getLogger(__name__)

GROUP_ID = "agents.parked"  # committed offsets only: the reader assigns partitions itself
COMMIT_EVERY_S = 1.0
LAST_PARKED = 65_536  # per partition: keys whose last parked webhook is remembered
READ_AHEAD = 2048  # parked records kept from a fetch for the next heads (bounded memory)
FETCH_TIMEOUT_S = 30.0

FIFO_KEYS = Gauge(
    "webhookmaster_fifo_keys", "FIFO ordering keys with a webhook open on this agent's partitions."
)
FIFO_WAITING = Gauge(
    "webhookmaster_fifo_waiting",
    "FIFO webhooks parked behind their key's head on this agent's partitions.",
)

# deliver(record, source) -> (outcome, next attempt due at): one attempt, its outcome durable
Deliver = Callable[[Webhook, Message], Awaitable[tuple[str, datetime | None]]]
Durably = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


@dataclass
class _Ticket:
    """An ingest record's turn to park: records of a partition park in offset order."""

    before: asyncio.Future[None] | None
    mine: asyncio.Future[None]


@dataclass
class _Part:
    """A parked partition this agent reads."""

    log: PartitionLog = field(default_factory=PartitionLog)
    live_at: int = 0  # the partition's end when it was assigned: replayed up to here
    live: bool = False
    heads: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # key -> its head's task
    attempting: set[str] = field(default_factory=set)  # keys whose head is in an attempt
    released: bool = False  # revoked: heads stop after the attempt in hand
    committed: int = -1


def _resolve(ticket: _Ticket) -> None:
    """Let the next record park once every record before this one has."""
    if ticket.mine.done():
        return
    if ticket.before is None or ticket.before.done():
        ticket.mine.set_result(None)
    else:
        ticket.before.add_done_callback(lambda _: _resolve(ticket))


class Ordering:
    """The FIFO side of one delivery agent."""

    def __init__(
        self,
        settings: Settings,
        table: SubscriptionTable,
        producer: AsyncProducer,
        deliver: Deliver,
        durably: Durably,
    ) -> None:
        self.table = table
        self.producer = producer
        self.deliver = deliver
        self.durably = durably
        self.topic = settings.topic(PARKED)
        self.drain_s = settings.request_timeout_s + 10
        self.reader = ParkedReader(settings, self.topic)
        self.parts: dict[int, _Part] = {}
        self._tickets: dict[tuple[Partition, int], _Ticket] = {}
        self._last: dict[Partition, asyncio.Future[None]] = {}
        # the webhook last parked for each key, per partition (waiting_for of the next one)
        self._last_parked: dict[int, dict[str, str]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = asyncio.Event()

    # --- ingest side ------------------------------------------------------------------------

    def ticket(self, msg: Message, task: asyncio.Task[None]) -> None:
        """Called for every ingest record as its task starts, in offset order."""
        tp = record_tp(msg)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = self._last.get(tp)
        self._last[tp] = mine
        ticket = _Ticket(before if before is not None and not before.done() else None, mine)
        key = (tp, record_offset(msg))
        self._tickets[key] = ticket

        def finished(_: asyncio.Task[None]) -> None:
            self._tickets.pop(key, None)
            _resolve(ticket)
            if self._last.get(tp) is mine and mine.done():
                del self._last[tp]

        task.add_done_callback(finished)

    def is_fifo(self, record: Webhook) -> bool:
        sub = self.table.get(record.subscription_id or "")
        return (
            sub is not None
            and sub.ordering == "fifo"
            and sub.is_active
            and sub.accepts(record.event_type)
            and record.attempt == 0
        )

    async def park(self, record: Webhook, msg: Message) -> bool:
        """Write a FIFO webhook of an ingest record to its key's queue (True once Kafka
        acknowledged it); False for any other webhook, which the caller delivers."""
        ticket = self._tickets.pop((record_tp(msg), record_offset(msg)), None)
        if not self.is_fifo(record):
            if ticket is not None:
                _resolve(ticket)
            return False
        if ticket is not None and ticket.before is not None:
            await ticket.before  # the records before this one parked first
        partition = msg.partition()
        assert record.subscription_id is not None and partition is not None
        key = parked.fifo_key(record.subscription_id, record.ordering_key)
        last = self._last_parked.setdefault(partition, {})
        headers = [
            *record.headers(),
            (parked.OP_HEADER, b"enq"),
            (parked.KEY_HEADER, key.encode()),
            (parked.SOURCE_HEADER, str(record_offset(msg)).encode()),
        ]
        if key in last:
            headers.append((parked.WAITING_FOR_HEADER, last[key].encode()))
        last[key] = record.webhook_id
        if len(last) > LAST_PARKED:  # bounded: waiting_for is left out for the oldest keys
            del last[next(iter(last))]
        sub_key = record.subscription_id.encode()
        while True:
            try:  # produced now, before the next record of the partition may be
                sent = self.producer.produce_now(
                    self.topic, record.body, sub_key, headers, partition
                )
                break
            except BufferError:
                await asyncio.sleep(0.005)  # the producer's queue is full: keep the turn
            except ProduceError as exc:
                log.warning("parking %s: %s", record.webhook_id, exc)
                await asyncio.sleep(0.5)
        if ticket is not None and not ticket.mine.done():
            ticket.mine.set_result(None)
        try:
            await sent
        except ProduceError:
            # not acknowledged: sent again, until it is (a retried record may break the order
            # only when Kafka lost the first while acknowledging later ones, which an
            # idempotent producer does not)
            await self.durably(
                lambda: self.producer.send(self.topic, record.body, sub_key, headers, partition)
            )
        return True

    # --- assignment (called on the ingest consumer's thread) ---------------------------------

    def assigned(self, tps: list[Partition]) -> None:
        """Start reading the parked partitions of these ingest partitions."""
        self._on_loop(self._assign(_numbers(tps)), tps)

    def revoked(self, tps: list[Partition]) -> None:
        """Stop the heads of these partitions before the partitions move on."""
        self._on_loop(self._release(_numbers(tps)), tps)

    def _on_loop(self, work: Any, tps: list[Partition]) -> None:
        """Run ``work`` on the event loop and wait for it (bounded), from another thread."""
        loop = self.loop
        if loop is None or not tps or loop.is_closed() or self.reader.closed:
            work.close()
            return
        future = asyncio.run_coroutine_threadsafe(work, loop)
        try:
            future.result(timeout=self.drain_s + 15)
        except Exception as exc:  # timeout, or the loop stopping: the next owner redoes
            log.warning("parked partitions %s: %s", _numbers(tps), exc)

    async def _release(self, numbers: list[int]) -> None:
        for number in numbers:
            part = self.parts.pop(number, None)
            self._last_parked.pop(number, None)
            if part is None:
                continue
            part.released = True
            # an attempt in hand ends (its request may have reached the endpoint: its outcome
            # is published, and the next owner does not race it); waiting heads stop at once
            busy = []
            for key, task in part.heads.items():
                if key in part.attempting:
                    busy.append(task)
                else:
                    task.cancel()
            if busy:
                _, late = await asyncio.wait(busy, timeout=self.drain_s)
                for task in late:
                    task.cancel()
            if part.live and not self.reader.closed:
                await self.reader.call(self.reader.commit, number, part.log)
        if not self.reader.closed:
            await self.reader.call(self.reader.unassign, numbers)

    # --- the parked partitions --------------------------------------------------------------

    def attach(self) -> None:
        """Call on the agent's event loop before its consumers subscribe."""
        self.loop = asyncio.get_running_loop()

    async def run(self) -> None:
        """Read the parked partitions of this agent's ingest partitions until stopped."""
        self.loop = asyncio.get_running_loop()
        URGENT.set(True)  # heads wait at the head of their lane, as due retries do
        next_commit = time.monotonic() + COMMIT_EVERY_S
        try:
            while not self.stopping.is_set():
                if not self.parts:
                    await asyncio.sleep(0.1)
                    continue
                msgs = await self.reader.call(self.reader.consume, 500, 0.1)
                for msg in msgs:
                    self._apply(msg)
                self._go_live()
                if time.monotonic() >= next_commit:
                    next_commit = time.monotonic() + COMMIT_EVERY_S
                    await self._commit()
        finally:
            tasks = [t for part in self.parts.values() for t in part.heads.values()]
            try:  # attempts in hand finish (bounded), the rest stop; offsets committed
                await self._release(sorted(self.parts))
            except Exception as exc:
                log.warning("stopping the FIFO heads: %s", exc)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.reader.close()

    def stop(self) -> None:
        self.stopping.set()

    async def _assign(self, numbers: list[int]) -> None:
        numbers = [n for n in numbers if n not in self.parts]
        if not numbers:
            return
        starts = await self.reader.call(self.reader.assign, numbers)
        for number, (start, end, max_source) in starts.items():
            part = _Part(live_at=end)
            part.log.next_offset = start
            part.log.max_source = max_source
            part.live = start >= end
            self.parts[number] = part
            log.info("parked partition %d: replaying offsets %d to %d", number, start, end)

    def _apply(self, msg: Message) -> None:
        if msg.error() is not None:
            log.warning("parked topic: %s", msg.error())
            return
        part = self.parts.get(msg.partition() or 0)
        if part is None:
            return
        headers = dict(record_headers(msg))
        op = (headers.get(parked.OP_HEADER) or b"").decode()
        try:
            if op == "enq":
                data: dict[str, Any] = {
                    "key": (headers.get(parked.KEY_HEADER) or b"").decode(),
                    "webhook_id": (headers.get(records.H_WEBHOOK_ID) or b"").decode(),
                    "source": int(headers.get(parked.SOURCE_HEADER) or b"-1"),
                }
            else:
                data = orjson.loads(msg.value() or b"{}")
                op = str(data.get("op", op))
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("parked record %d@%d unreadable: %s", msg.partition(), msg.offset(), exc)
            part.log.next_offset = max(part.log.next_offset, record_offset(msg) + 1)
            return
        skipped = part.log.heads.get(str(data.get("webhook_id"))) if op == "skip" else None
        ended = part.log.head(str(data.get("key"))) if op == "end" else None
        key = part.log.apply(record_offset(msg), op, data)
        if ended is not None and data.get("key") not in part.log.keys:
            # the key's queue is empty: forget its last webhook unless one was parked since
            last = self._last_parked.get(msg.partition() or 0, {})
            if last.get(str(data.get("key"))) == ended[1]:
                del last[str(data.get("key"))]
        if skipped is not None and skipped not in part.log.keys:
            task = part.heads.pop(skipped, None)  # a skipped head still retrying
            if task is not None:
                task.cancel()
        if op == "enq" and key is not None:
            self.reader.keep(msg)  # a new head: its record is at hand
        if key is not None and part.live:
            self._start(msg.partition() or 0, part, key)
        if not part.live and record_offset(msg) + 1 >= part.live_at:
            log.info("parked partition %s replayed: %d keys", msg.partition(), len(part.log.keys))
            part.live = True
            for each in list(part.log.keys):
                self._start(msg.partition() or 0, part, each)

    def _go_live(self) -> None:
        """Partitions with nothing to replay start their heads at once."""
        for number, part in self.parts.items():
            if not part.live and part.log.next_offset >= part.live_at:
                part.live = True
                for key in list(part.log.keys):
                    self._start(number, part, key)

    def _start(self, number: int, part: _Part, key: str) -> None:
        old = part.heads.pop(key, None)
        if old is not None:
            old.cancel()
        queue = part.log.keys.get(key)
        if queue is None or queue.halted:
            return
        task = asyncio.create_task(self._run_head(number, part, key))
        part.heads[key] = task
        task.add_done_callback(lambda t: _forget(part, key, t))

    async def _commit(self) -> None:
        FIFO_KEYS.set(sum(len(part.log.keys) for part in self.parts.values()))
        FIFO_WAITING.set(self.waiting())
        for number, part in list(self.parts.items()):
            floor = part.log.floor()[0]
            if part.live and floor != part.committed:
                if await self.reader.call(self.reader.commit, number, part.log):
                    part.committed = floor

    # --- a key's head -----------------------------------------------------------------------

    async def _run_head(self, number: int, part: _Part, key: str) -> None:
        """Deliver the key's head to its end; an unexpected error tries again (the next
        owner would too)."""
        while True:
            try:
                return await self._deliver_head(number, part, key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("FIFO head of %s on parked partition %d; trying again", key, number)
                await asyncio.sleep(1.0)

    async def _deliver_head(self, number: int, part: _Part, key: str) -> None:
        head = part.log.head(key)
        queue = part.log.keys.get(key)
        if head is None or queue is None:
            return
        offset, webhook_id = head
        log.debug("head %s of %s: fetching %d@%d", webhook_id, key, number, offset)
        msg = await self.reader.fetch(number, offset)
        log.debug("head %s fetched", webhook_id)
        record = records.parse_webhook(
            msg.value(), record_headers(msg), webhook_id, records.now_iso(), check_body=False
        )
        attempt, due_ms = queue.attempt, queue.due_ms
        sub_id = record.subscription_id or ""
        while not part.released:
            wait = due_ms / 1000 - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            part.attempting.add(key)
            try:
                outcome, next_at = await self.deliver(record.replace(attempt=attempt), msg)
            finally:
                part.attempting.discard(key)
            if outcome == "retrying" and next_at is not None:
                attempt += 1
                due_ms = int(next_at.timestamp() * 1000)
                await self._write(
                    number, sub_id, "att", key, webhook_id, attempt=attempt, due_ms=due_ms
                )
                continue
            sub = self.table.get(sub_id)
            halt = outcome == "failed" and sub is not None and sub.on_failure == "halt"
            await self._write(
                number, sub_id, "halt" if halt else "end", key, webhook_id, outcome=outcome
            )
            return

    async def _write(
        self, number: int, sub_id: str, op: str, key: str, webhook_id: str, **extra: Any
    ) -> None:
        value = parked.command(op, webhook_id, key, **extra)
        headers = [(parked.OP_HEADER, op.encode())]
        await self.durably(
            lambda: self.producer.send(self.topic, value, sub_id.encode(), headers, number)
        )

    def waiting(self) -> int:
        return sum(part.log.waiting() for part in self.parts.values())


def _forget(part: _Part, key: str, task: asyncio.Task[None]) -> None:
    if part.heads.get(key) is task:
        del part.heads[key]
    if not task.cancelled() and task.exception() is not None:
        log.error("FIFO head of %s failed", key, exc_info=task.exception())


def _take(consumer: Consumer, n: int, timeout: float) -> list[Message]:
    """``consume(n, t)`` waits for ``n`` records or ``t``: wait for the first one only."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(n - 1, 0)]


def _numbers(tps: list[Partition]) -> list[int]:
    return sorted({p for _, p in tps})


class ParkedReader:
    """Reads the parked partitions this agent owns (assigned by hand, offsets committed to a
    group of their own) and fetches single records by offset, on one thread."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        common = {"group.protocol": "classic", "enable.auto.commit": False}
        self._consumer = Consumer(
            consumer_config(
                settings, settings.group(GROUP_ID), **common, **{"fetch.wait.max.ms": 20}
            )
        )
        self._fetcher = Consumer(
            consumer_config(
                settings,
                settings.group(GROUP_ID + ".fetch"),
                **common,
                **{"fetch.wait.max.ms": 10, "enable.auto.offset.store": False},
            )
        )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kafka-parked")
        self._fetch_executor = ThreadPoolExecutor(1, thread_name_prefix="kafka-parked-fetch")
        self._ahead: OrderedDict[tuple[int, int], Message] = OrderedDict()
        self._lock = threading.Lock()  # _ahead: the fetch thread and the loop's
        self.closed = False

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def assign(self, numbers: list[int]) -> dict[int, tuple[int, int, int]]:
        """Assign the partitions from their committed floor; (start, end, max source) each."""
        tps = [TopicPartition(self.topic, n) for n in numbers]
        committed = {tp.partition: tp for tp in self._consumer.committed(tps, timeout=10)}
        found = {}
        starts = []
        for n in numbers:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, n), timeout=10, cached=False
            )
            tp = committed.get(n)
            start = tp.offset if tp is not None and tp.offset >= 0 else OFFSET_BEGINNING
            max_source = int(tp.metadata) if tp is not None and tp.metadata else -1
            begin = max(low, start) if start >= 0 else low
            found[n] = (begin, high, max_source)
            starts.append(TopicPartition(self.topic, n, begin))
        self._consumer.incremental_assign(starts)
        return found

    def unassign(self, numbers: list[int]) -> None:
        with contextlib.suppress(KafkaException):
            self._consumer.incremental_unassign([TopicPartition(self.topic, n) for n in numbers])
        with self._lock:
            for key in [k for k in self._ahead if k[0] in numbers]:
                del self._ahead[key]

    def consume(self, n: int, timeout: float) -> list[Message]:
        """Up to ``n`` records: as soon as one is there, with whatever else is queued."""
        return _take(self._consumer, n, timeout)

    def commit(self, number: int, state: PartitionLog) -> bool:
        floor, max_source = state.floor()
        offset = TopicPartition(self.topic, number, floor, str(max_source))
        try:
            self._consumer.commit(offsets=[offset], asynchronous=False)
            return True
        except KafkaException as exc:
            log.warning("parked offsets not committed (replayed further back): %s", exc)
            return False

    def keep(self, msg: Message) -> None:
        """Keep a record that a head will need (bounded: the oldest kept goes first)."""
        with self._lock:
            self._ahead[(msg.partition() or 0, record_offset(msg))] = msg
            while len(self._ahead) > READ_AHEAD:
                self._ahead.popitem(last=False)

    async def fetch(self, number: int, offset: int) -> Message:
        with self._lock:
            found = self._ahead.pop((number, offset), None)
        if found is not None:
            return found
        loop = asyncio.get_running_loop()
        msg: Message = await loop.run_in_executor(self._fetch_executor, self._fetch, number, offset)
        return msg

    def _fetch(self, number: int, offset: int) -> Message:
        """The record at ``offset`` (on the fetch thread); the records after it that came with it
        are kept for the next heads."""
        self._fetcher.assign([TopicPartition(self.topic, number, offset)])
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        wanted = None
        while wanted is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"parked record {number}@{offset} not fetched")
            for msg in _take(self._fetcher, 500, 0.5):
                if msg.error() is not None:
                    continue
                at = record_offset(msg)
                if at == offset:
                    wanted = msg
                elif at > offset and dict(record_headers(msg)).get(parked.OP_HEADER) == b"enq":
                    self.keep(msg)
        return wanted

    async def close(self) -> None:
        self.closed = True
        await self.call(self._consumer.close)
        await asyncio.get_running_loop().run_in_executor(self._fetch_executor, self._fetcher.close)
        self._executor.shutdown(wait=True)
        self._fetch_executor.shutdown(wait=True)
