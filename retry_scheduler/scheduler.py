"""Hold each retry tier's records until due, then hand them back to the agents (the due topic).

Every record of a tier has the same delay, so each partition is ordered by due time and its
head record says when the partition is next due. Fetched records that are not yet due wait in
memory, per partition, in offset order; the consumer keeps polling (never a bare sleep) with a
poll timeout that ends at the earliest due head, and hands each record back the moment it is
due. Memory is bounded with pause/resume: a partition holding ``HOLD_HIGH`` records is paused,
and resumed when it is down to ``HOLD_LOW`` — early enough that the next records are fetched
before they are due. A record's offset is committed only after its hand-off was acknowledged
by Kafka, so a crash or a rebalance simply re-reads what was held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from confluent_kafka import KafkaException, Message

from retry_scheduler import metrics
from schemas import records
from schemas.topics import DEAD_LETTER, DUE
from webhookmaster import kafka_clients as kafka
from webhookmaster import retry_ladder, tracing
from webhookmaster.consumer_thread import ConsumerThread
from webhookmaster.offsets import Partition
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

GROUP_ID = "scheduler"
MAX_WAIT_S = 0.1
HOLD_HIGH = 500  # records held per partition before it is paused
HOLD_LOW = 250  # ... and resumed
BACKLOG_EVERY_S = 2.0


def due_ms(msg: Message) -> int:
    """When ``msg`` is due (epoch ms), from its header; records without one are due now."""
    for key, value in kafka.record_headers(msg):
        if key == retry_ladder.DUE_HEADER and value:
            try:
                return int(value)
            except ValueError:
                break
    return 0


class Scheduler:
    def __init__(self, settings: Settings, producer: kafka.AsyncProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.due_topic = settings.topic(DUE)
        self.dead_letter_topic = settings.topic(DEAD_LETTER)
        self.ladder = retry_ladder.tiers(settings.topic_prefix, settings.retry_ladder)
        self.tier_names = {
            t.topic: t.topic.removeprefix(settings.topic_prefix) for t in self.ladder
        }
        self.consumer = ConsumerThread(
            kafka.consumer_config(
                settings,
                settings.group(GROUP_ID),
                **{"fetch.wait.max.ms": 20, "queued.max.messages.kbytes": 16384},
            ),
            [t.topic for t in self.ladder],
            on_revoke=self._revoked,
            commit_interval_s=settings.kafka_commit_interval_s,
        )
        self.held: dict[Partition, deque[Message]] = {}  # fetched, waiting, in offset order
        self.paused: set[Partition] = set()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.consumer.subscribe()
        next_backlog = 0.0
        try:
            while not self.stopping.is_set():
                now_ms = time.time() * 1000
                await self._resume_due(now_ms)
                for msg in await self.consumer.consume(500, self._wait_s(now_ms)):
                    await self._route(msg)
                if time.monotonic() >= next_backlog:
                    next_backlog = time.monotonic() + BACKLOG_EVERY_S
                    await self.consumer.call(self._measure_backlog)
        finally:
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=30)
            await self.consumer.close()

    def _wait_s(self, now_ms: float) -> float:
        heads = [due_ms(queue[0]) for queue in list(self.held.values()) if queue]
        if not heads:
            return MAX_WAIT_S
        return min(MAX_WAIT_S, max(0.0005, (min(heads) - now_ms) / 1000))

    async def _resume_due(self, now_ms: float) -> None:
        """Hand back every held record that is due; resume partitions that drained."""
        ready = []
        for tp, queue in list(self.held.items()):
            while queue and due_ms(queue[0]) <= now_ms:
                self._start_hand_back(queue.popleft())
            if tp in self.paused and len(queue) <= HOLD_LOW:
                self.paused.discard(tp)
                ready.append(tp)
        if ready:
            try:
                await self.consumer.call(self.consumer.resume, ready)
            except KafkaException as exc:  # revoked meanwhile
                log.info("resume %s: %s", ready, exc)

    async def _route(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            log.warning("consume: %s", err.str())
            return
        tp = kafka.record_tp(msg)
        queue = self.held.setdefault(tp, deque())
        if queue and kafka.record_offset(msg) <= kafka.record_offset(queue[-1]):
            return  # already held (fetched again after a resume)
        if not queue and due_ms(msg) <= time.time() * 1000:
            self._start_hand_back(msg)
            return
        queue.append(msg)
        if len(queue) >= HOLD_HIGH and tp not in self.paused:
            self.paused.add(tp)
            metrics.PAUSES.inc()
            await self.consumer.call(self.consumer.pause, [tp])

    def _start_hand_back(self, msg: Message) -> None:
        self.consumer.tracker.started(kafka.record_tp(msg), kafka.record_offset(msg))
        task = asyncio.create_task(self._hand_back(msg, due_ms(msg)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _hand_back(self, msg: Message, at: int) -> None:
        """Produce ``msg`` (value and headers unchanged; with tracing on, its traceparent
        then names the hand-back span) to the due topic; once Kafka acknowledged it, its
        offset may be committed. A record Kafka refuses for good is dead-lettered instead, so
        it cannot hold the partition."""
        headers = kafka.record_headers(msg)
        if not tracing.enabled():
            return await self._send_back(msg, at, headers)
        parent = records.valid_traceparent(dict(headers).get(tracing.HEADER))
        tier = self.tier_names[kafka.record_tp(msg)[0]]
        with tracing.span(f"hand back {tier}", "producer", parent) as trace:
            assert trace is not None
            kept = [(k, v) for k, v in headers if k != tracing.HEADER]
            await self._send_back(msg, at, [*kept, (tracing.HEADER, trace.encode())])

    async def _send_back(
        self, msg: Message, at: int, headers: list[tuple[str, bytes | None]]
    ) -> None:
        delay = 0.5
        while True:
            try:
                await self.producer.send(self.due_topic, msg.value(), msg.key(), headers=headers)
                break
            except kafka.ProduceError as exc:
                if self.stopping.is_set():
                    return  # not committed: handed back after restart
                if exc.permanent:
                    if await self._dead_letter(msg, f"hand-back refused by Kafka: {exc}"):
                        break
                    return
                log.warning("hand-back failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        tier = self.tier_names[kafka.record_tp(msg)[0]]
        if at:
            metrics.LATENESS.labels(tier).observe(max(0.0, time.time() - at / 1000))
        metrics.HANDED_BACK.labels(tier).inc()
        self.consumer.tracker.done(kafka.record_tp(msg), kafka.record_offset(msg))

    async def _dead_letter(self, msg: Message, reason: str) -> bool:
        """Dead-letter ``msg`` (where it was and its headers; not its value); False when the
        scheduler stopped before Kafka acknowledged."""
        letter = {
            "reason": reason,
            "failed_at": records.now_iso(),
            "webhook_id": None,
            "subscription_id": None,
            "record": None,
            "raw": None,
            "source": {
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "headers": {
                    k: (v or b"").decode("utf-8", errors="replace")
                    for k, v in kafka.record_headers(msg)
                },
            },
        }
        while True:
            try:
                await self.producer.send(self.dead_letter_topic, records.dumps(letter), msg.key())
                metrics.DEAD_LETTERED.labels("refused").inc()
                return True
            except kafka.ProduceError as exc:
                if self.stopping.is_set():
                    return False
                log.warning("dead-lettering a refused record failed (%s)", exc)
                await asyncio.sleep(1.0)

    def _revoked(self, partitions: list[Partition]) -> None:
        """Consumer thread: give hand-offs in flight a moment to land; forget what was held (the
        next owner reads it again from the committed offset)."""
        deadline = time.monotonic() + 10
        while (
            any(self.consumer.tracker.in_flight(tp) for tp in partitions)
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        for tp in partitions:
            self.paused.discard(tp)
            self.held.pop(tp, None)

    def _measure_backlog(self) -> None:
        assigned = sorted(self.consumer.assigned)
        if not assigned:
            return
        totals = dict.fromkeys(self.tier_names.values(), 0)
        for tp, position in self.consumer.positions(assigned).items():
            _, high = self.consumer.watermarks(tp)
            if position >= 0 and high >= 0:
                totals[self.tier_names[tp[0]]] += max(0, high - position)
        for tier, count in totals.items():
            metrics.BACKLOG.labels(tier).set(count)
