"""The projector's Kafka side: a confluent-kafka consumer of the four topics, driven from
asyncio, committing a batch's offsets only after its PostgreSQL transaction committed.

Every call on the consumer runs on one dedicated thread (rebalance callbacks run inside
``consume``, on that thread). The loop is strictly consume → write → commit, so a rebalance can
only happen between batches, when nothing is in flight. A commit that fails (broker away,
rebalance) is logged and the records are projected again later: the upserts are idempotent.

A watchdog replaces a consumer that stopped fetching: librdkafka can come out of a broker
restart with its broker handles or partitions stuck (seen with a single broker restarting under
load: no record fetched, no error, ever again). When no record came for ``STALL_S`` and two
checks ``CHECK_EVERY_S`` apart see the same sign (an assigned partition with records beyond this
consumer's position, or this consumer unable to query a cluster that a new client reaches), the
consumer is closed and a new one joins the group; it resumes from the committed offsets.
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
from confluent_kafka.admin import AdminClient

from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST, SUBSCRIPTIONS
from status_projector import metrics
from status_projector.changes import KafkaRecord
from status_projector.store import Stopping, Store
from webhookmaster.kafka_clients import (
    admin_config,
    consumer_config,
    record_headers,
    record_offset,
    record_tp,
)
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
WARN_EVERY_S = 60.0
TOPICS = (INGEST, ATTEMPTS, DEAD_LETTER, SUBSCRIPTIONS)
STALL_S = 20.0  # idle this long: the watchdog starts checking whether records wait
CHECK_EVERY_S = 10.0  # between two checks; a stuck consumer is replaced at the second
QUERY_TIMEOUT_S = 5.0


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
        self._config = consumer_config(
            settings, group_id(settings), error_cb=self._on_error, **{"fetch.wait.max.ms": 100}
        )
        self._consumer = Consumer(self._config)
        self._progress_at = time.monotonic()  # last record consumed or batch committed
        self._checked_at = time.monotonic()
        self._suspect: tuple[Any, ...] | None = None  # the sign seen at the last check
        self.checks = 0  # watchdog checks run
        self.replaced = 0  # consumers replaced by the watchdog

    def _on_error(self, err: KafkaError) -> None:
        self._warn_limited(f"Kafka: {err.str()}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer closing
        self.joined = True
        if partitions:
            log.info("assigned %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.info("revoked %s", _describe(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer closing
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

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    async def run(self) -> None:
        """Consume, write, commit, until :meth:`stop`."""
        await self._call(self._subscribe)
        log.info(
            "status projector consuming %s (group %s)",
            ", ".join(self.topics),
            group_id(self.settings),
        )
        try:
            while not self._stop.is_set():
                messages = await self._call(
                    self._consumer.consume,
                    self.settings.projector_batch_size,
                    self.settings.projector_batch_wait_s,
                )
                recs = self._records(messages)
                if not recs:
                    await self._watch()
                    continue
                self._progress_at = time.monotonic()
                try:
                    await self.store.write(recs)
                except Stopping:
                    log.warning(
                        "stopping with %d records unwritten; they stay uncommitted", len(recs)
                    )
                    break
                await self._commit(recs)
                self._progress_at = time.monotonic()
        finally:
            await self._call(self._close)
            self._executor.shutdown(wait=False)

    async def _watch(self) -> None:
        """On an idle consume, once STALL_S passed without a record: every CHECK_EVERY_S, look
        for a sign that the consumer is stuck; the same sign at two checks in a row (no record
        in between) replaces the consumer. One sign alone may be a record not fetched yet."""
        now = time.monotonic()
        if now - self._progress_at < STALL_S:
            self._suspect = None
            return
        if now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        self.checks += 1
        found = await self._call(self._stuck)
        if found is None or found[0] != self._suspect:
            self._suspect = found[0] if found else None
            return
        log.warning(
            "the Kafka consumer fetched nothing for %.0f s although %s; replacing it "
            "(it resumes from the committed offsets)",
            now - self._progress_at,
            found[1],
        )
        await self._call(self._replace)
        self._suspect = None
        self._progress_at = time.monotonic()

    def _stuck(self) -> tuple[tuple[Any, ...], str] | None:
        """A sign that the consumer is stuck, as (key, text): records wait beyond its position
        on an assigned partition, or it cannot query a cluster that answers a new client."""
        try:
            assignment = self._consumer.assignment()
            if not assignment:
                return None
            positions = self._consumer.position(assignment)
            unread = [tp for tp in positions if tp.offset < 0]
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in (
                    self._consumer.committed(unread, timeout=QUERY_TIMEOUT_S) if unread else []
                )
            }
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(
                    tp, timeout=QUERY_TIMEOUT_S, cached=False
                )
                start = max(
                    low,
                    tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1),
                )
                if high > start:
                    return (
                        ("lag", tp.topic, tp.partition, start),
                        f"{tp.topic} [{tp.partition}] has records from offset {start} to {high}",
                    )
            return None
        except KafkaException as exc:
            if _cluster_answers(self.settings):
                return ("unreachable",), f"it cannot query the cluster ({exc}), a new client can"
            return None  # the cluster is away: nothing to fetch anyway

    def _replace(self) -> None:
        """Close the stuck consumer (in the background: a stuck close must not block) and
        subscribe a new one to the group."""
        old = self._consumer
        self.joined = False
        self._consumer = Consumer(self._config)
        self._subscribe()
        self.replaced += 1
        threading.Thread(
            target=_close_quietly, args=(old,), name="projector-kafka-close", daemon=True
        ).start()

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
            recs.append(
                KafkaRecord(
                    *record_tp(msg),
                    record_offset(msg),
                    msg.timestamp()[1],
                    msg.key(),
                    msg.value(),
                    tuple(record_headers(msg)),
                )
            )
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
            log.warning(
                "offset commit failed (%s); those records will be projected again",
                exc.args[0].str() if exc.args else exc,
            )
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


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.info("closing the replaced consumer: %s", exc)


def _cluster_answers(settings: Settings) -> bool:
    """True when a new client gets the cluster's metadata."""
    admin = AdminClient(
        admin_config(settings, log_level=0, **{"socket.connection.setup.timeout.ms": 2000})
    )
    try:
        admin.list_topics(timeout=QUERY_TIMEOUT_S)
    except KafkaException:
        return False
    return True


def _describe(partitions: list[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(p)}" for t, p in sorted(by_topic.items()))
