"""The projector's Kafka side: the shared consumer bridge (:mod:`webhookmaster.consumer_thread`)
on the four topics, committing a batch's offsets only after its PostgreSQL transaction committed.

The loop is strictly consume → write → commit, so a rebalance (its callbacks run inside
``consume``) can only happen between batches, when nothing is in flight. A commit that fails
(broker away, rebalance) is logged and the records are projected again later: the upserts are
idempotent. The bridge's watchdog replaces a consumer that stopped fetching.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaException, Message

from schemas.topics import ATTEMPTS, DEAD_LETTER, DUE, INGEST, PARKED, SUBSCRIPTIONS
from status_projector import metrics
from status_projector.changes import KafkaRecord
from status_projector.store import Stopping, Store
from webhookmaster.consumer_thread import ConsumerThread, Watchdog
from webhookmaster.kafka_clients import consumer_config, record_headers, record_offset, record_tp
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

TOPICS = (INGEST, DUE, ATTEMPTS, DEAD_LETTER, SUBSCRIPTIONS, PARKED)


def group_id(settings: Settings) -> str:
    return settings.group("status-projector")


class ProjectorConsumer:
    """Consumes batches and hands them to the :class:`Store`; commits after each write."""

    def __init__(self, settings: Settings, store: Store, watchdog: Watchdog | None = None) -> None:
        self.settings = settings
        self.store = store
        self.topics = [settings.topic(suffix) for suffix in TOPICS]
        self._stop = threading.Event()
        self.bridge = ConsumerThread(
            consumer_config(settings, group_id(settings), **{"fetch.wait.max.ms": 100}),
            self.topics,
            watchdog=watchdog or Watchdog(),
            report_errors=True,
        )

    @property
    def joined(self) -> bool:
        """A group member now (assigned partitions, possibly none)."""
        return self.bridge.joined

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (an unwritten batch is dropped
        uncommitted, to be projected again by the next owner of its partitions)."""
        self._stop.set()
        self.store.stopping.set()

    async def run(self) -> None:
        """Consume, write, commit, until :meth:`stop`."""
        await self.bridge.subscribe()
        log.info(
            "status projector consuming %s (group %s)",
            ", ".join(self.topics),
            group_id(self.settings),
        )
        try:
            while not self._stop.is_set():
                messages = self.bridge.records(
                    await self.bridge.consume(
                        self.settings.projector_batch_size,
                        self.settings.projector_batch_wait_s,
                        fill=True,
                    )
                )
                if not messages:
                    continue
                for msg in messages:
                    self.bridge.tracker.started(record_tp(msg), record_offset(msg))
                try:
                    await self.store.write([_record(msg) for msg in messages])
                except Stopping:
                    log.warning(
                        "stopping with %d records unwritten; they stay uncommitted", len(messages)
                    )
                    break
                for msg in messages:
                    self.bridge.tracker.done(record_tp(msg), record_offset(msg))
                await self.bridge.commit()
                await self.bridge.call(self._update_lag)
        finally:
            await self.bridge.close()

    def _update_lag(self) -> None:
        try:
            metrics.CONSUMER_LAG.set(sum(self.bridge.lag().values()))
        except KafkaException:
            pass


def _record(msg: Message) -> KafkaRecord:
    return KafkaRecord(
        *record_tp(msg),
        record_offset(msg),
        msg.timestamp()[1],
        msg.key(),
        msg.value(),
        tuple(record_headers(msg)),
    )
