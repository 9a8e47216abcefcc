"""The projector's Kafka side: a confluent-kafka consumer of the four topics, driven from
asyncio, committing a batch's offsets only after its PostgreSQL transaction committed.

Every call on the consumer runs on one dedicated thread (rebalance callbacks run inside
``consume``, on that thread). The loop is strictly consume → write → commit, so a rebalance can
only happen between batches, when nothing is in flight. A commit that fails (broker away,
rebalance) is logged and the records are projected again later: the upserts are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST, SUBSCRIPTIONS
from status_projector import metrics
from status_projector.changes import KafkaRecord
from status_projector.store import Stopping, Store
from webhookmaster.kafka_clients import consumer_config
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
WARN_EVERY_S = 60.0
TOPICS = (INGEST, ATTEMPTS, DEAD_LETTER, SUBSCRIPTIONS)


class FatalConsumerError(Exception):
    """librdkafka reported a fatal error: this consumer cannot go on (the process exits)."""


def group_id(settings: Settings) -> str:
    return settings.topic_prefix + "status-projector"


class ProjectorConsumer:
    """Consumes batches and hands them to the :class:`Store`; commits after each write."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.topics = [settings.topic_prefix + suffix for suffix in TOPICS]
        self.joined = False  # a group member now (assigned partitions, possibly none)
        self._stop = threading.Event()
        self._warned: dict[str, float] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector-kafka")
        self._consumer = Consumer(consumer_config(
            settings, group_id(settings), error_cb=self._on_error, **{"fetch.wait.max.ms": 100}))

    def _on_error(self, err: KafkaError) -> None:
        self._warn_limited(f"Kafka: {err.str()}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.joined = True
        if partitions:
            log.info("assigned %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.info("revoked %s", _describe(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.joined = False  # until the group assigns again
        log.warning("lost %s (no longer a group member)", _describe(partitions))

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (an unwritten batch is dropped
        uncommitted, to be projected again by the next owner of its partitions)."""
        self._stop.set()
        self.store.stopping.set()

    async def run(self) -> None:
        """Consume, write, commit, until :meth:`stop`."""
        await self._call(self._consumer.subscribe, self.topics, on_assign=self._on_assign,
                         on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("status projector consuming %s (group %s)", ", ".join(self.topics),
                 group_id(self.settings))
        try:
            while not self._stop.is_set():
                messages = await self._call(self._consumer.consume,
                                            self.settings.projector_batch_size,
                                            self.settings.projector_batch_wait_s)
                recs = self._records(messages)
                if not recs:
                    continue
                try:
                    await self.store.write(recs)
                except Stopping:
                    log.warning("stopping with %d records unwritten; they stay uncommitted",
                                len(recs))
                    break
                await self._commit(recs)
        finally:
            await self._call(self._close)
            self._executor.shutdown(wait=False)

    def _records(self, messages: list[Message]) -> list[KafkaRecord]:
        recs = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise FatalConsumerError(err.str())
                if err.code() != KafkaError._PARTITION_EOF:
                    self._warn_limited(f"consume: {err.str()}")
                continue
            recs.append(KafkaRecord(msg.topic(), msg.partition(), msg.offset(),
                                    msg.timestamp()[1], msg.key(), msg.value(),
                                    tuple(msg.headers() or ())))
        return recs

    def _warn_limited(self, text: str) -> None:
        """Log a Kafka error, the same text at most once a minute (a broker away would
        otherwise fill the log)."""
        now = time.monotonic()
        if self._warned.get(text, -WARN_EVERY_S) + WARN_EVERY_S <= now:
            self._warned[text] = now
            log.warning("%s", text)

    async def _commit(self, recs: list[KafkaRecord]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for rec in recs:
            key = (rec.topic, rec.partition)
            next_offsets[key] = max(next_offsets.get(key, 0), rec.offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            await self._call(self._consumer.commit, offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Written but not committed: projected again later, harmlessly (idempotent).
            log.warning("offset commit failed (%s); those records will be projected again",
                        exc.args[0].str() if exc.args else exc)
        await self._call(self._update_lag)

    def _update_lag(self) -> None:
        try:
            assignment = self._consumer.assignment()
            lag = 0
            for tp in self._consumer.position(assignment):
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lag += max(0, high - tp.offset)
            metrics.CONSUMER_LAG.set(lag)
        except KafkaException:
            pass

    def _close(self) -> None:
        try:
            self._consumer.close()  # leaves the group: partitions move at once
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)


def _describe(partitions: list[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(p)}" for t, p in sorted(by_topic.items()))
