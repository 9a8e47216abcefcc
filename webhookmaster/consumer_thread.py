"""A confluent-kafka consumer driven from asyncio.

librdkafka consumers are not safe to call from several threads, so every call runs on one
dedicated thread; the event loop awaits them. Rebalance callbacks fire on that thread too, inside
``consume``: on revocation the owner's ``on_revoke`` is given the partitions and may block that
thread (not the loop) while in-flight work of those partitions finishes, then the committable
offsets are committed before the partitions are released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from webhookmaster.offsets import OffsetTracker, Partition

log = logging.getLogger(__name__)
T = TypeVar("T")

ASSIGNED = Gauge(
    "webhookmaster_assigned_partitions", "Partitions this process's consumer group member owns."
)


class ConsumerThread:
    """One consumer, one thread, one :class:`OffsetTracker` whose committable offsets are
    committed before every fetch and on every revocation."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        on_assign: Callable[[list[Partition]], None] | None = None,
        on_revoke: Callable[[list[Partition]], None] | None = None,
    ) -> None:
        self.tracker = OffsetTracker()
        self._consumer = Consumer(config)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kafka-consumer")
        self._topics = topics
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.assigned: set[Partition] = set()
        self.subscribed = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the consumer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def subscribe(self) -> None:
        await self.call(self._consumer.subscribe, self._topics, self._assigned, self._revoked)
        self.subscribed = True

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assigned.update(tps)
        ASSIGNED.set(len(self.assigned))
        log.info("assigned %s", tps)
        if self._on_assign:
            self._on_assign(tps)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        log.info("revoking %s", tps)
        if self._on_revoke:
            self._on_revoke(tps)
        self._commit()
        for tp in tps:
            self.tracker.forget(tp)
            self.assigned.discard(tp)
        ASSIGNED.set(len(self.assigned))

    def _commit(self, wait: bool = True) -> None:
        offsets = [
            TopicPartition(t, p, off)
            for (t, p), off in self.tracker.committable().items()
            if (t, p) in self.assigned
        ]
        if not offsets:
            return
        try:
            if wait:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit failed (records will be redone): %s", exc)

    def _consume(self, max_records: int, timeout: float) -> list[Message]:
        self._commit(wait=False)  # revocation and close commit synchronously
        # consume(n, t) waits until n records are there or t passed: at low load every record
        # would wait the whole t. Wait for the first record only, then take what is queued.
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    async def consume(self, max_records: int, wait_s: float) -> list[Message]:
        """Commit what is committable, then fetch up to ``max_records``: as soon as one is
        there, with whatever else is already queued, or none after ``wait_s``."""
        return await self.call(self._consume, max_records, wait_s)

    async def commit(self) -> None:
        await self.call(self._commit)

    def pause(self, tps: list[Partition]) -> None:
        """Pause partitions (call on the consumer's thread, e.g. via :meth:`call`)."""
        self._consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: list[Partition]) -> None:
        self._consumer.resume([TopicPartition(t, p) for t, p in tps])

    def seek(self, tp: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(tp[0], tp[1], offset))

    def watermarks(self, tp: Partition) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)

    def positions(self, tps: list[Partition]) -> dict[Partition, int]:
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.position([TopicPartition(t, p) for t, p in tps])
        }

    async def close(self) -> None:
        """Commit, leave the group (revocation callbacks run), stop the thread."""
        await self.call(self._commit)
        await self.call(self._consumer.close)
        self._executor.shutdown(wait=True)
