"""De-duplication of first attempts that carry the idempotency marker (``wm-idempotent``).

Records keyed by a subscription meet one agent: the owner of their ingest partition. For every
marked first attempt it keeps a *claim*, ``webhook id → offset of the record that claimed it``,
per owned partition, for ``WM_IDEMPOTENCY_WINDOW`` (at most ``WM_IDEMPOTENCY_MAX_IDS`` ids a
partition, the oldest forgotten first). A marked record whose id was claimed by a record at
another offset is a duplicate: dropped (committed, counted, not delivered). The record that
claimed an id is processed again when it is redone (a crash before its commit): that is the
pipeline's at-least-once redo, not a duplicate.

Each claim is written to ``<prefix>idempotency`` (key: the id, value ``"<partition>/<offset>"``,
on the partition of the same number; compacted and deleted after the window) before the record
is delivered, so before its offset can be committed. On assignment, the partition's claims are
read back from that topic before any of its marked records is judged: the state survives a
restart and moves with the partition at a rebalance. No other store is involved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from schemas import records
from schemas.records import Webhook
from schemas.topics import IDEMPOTENCY, INGEST
from webhookmaster.kafka_clients import AsyncProducer, client_config, record_headers
from webhookmaster.offsets import Partition
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

DUPLICATES = Counter(
    "webhookmaster_duplicates_dropped_total",
    "Marked first attempts dropped because their webhook id was already claimed (fan-out "
    "re-expanded, an event or Idempotency-Key sent again).",
)
REMEMBERED = Gauge(
    "webhookmaster_idempotency_ids", "Webhook ids this agent remembers for de-duplication."
)
FORGOTTEN = Counter(
    "webhookmaster_idempotency_forgotten_total",
    "Ids forgotten before the window ended because a partition held WM_IDEMPOTENCY_MAX_IDS.",
)
LOAD_RETRY_S = 2.0
QUERY_TIMEOUT_S = 10.0
READ_WAIT_S = 0.05


def claim_key(webhook_id: str) -> int | str:
    """The id as it is remembered: a UUID in its canonical form as its 128-bit number (44
    bytes, not 85 for the text); any other id as it is."""
    if len(webhook_id) == 36:
        try:
            number = uuid.UUID(webhook_id)
        except ValueError:
            return webhook_id
        if str(number) == webhook_id:
            return number.int
    return webhook_id


class Claims:
    """One ingest partition's claims, oldest first: id → offset of the record that claimed it,
    with the claim times kept per second (``[second, ids claimed in it]``), not per id."""

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self.ids: OrderedDict[int | str, int] = OrderedDict()
        self.seconds: deque[list[int]] = deque()

    def claim(self, webhook_id: str, offset: int, now: float) -> int | None:
        """Claim ``webhook_id`` for the record at ``offset`` unless it is claimed already;
        returns the offset of an existing claim (None when this call claimed it)."""
        self.expire(now)
        key = claim_key(webhook_id)
        found = self.ids.get(key)
        if found is not None:
            return found
        self._add(key, offset, now)
        return None

    def add(self, webhook_id: str, offset: int, at: float) -> None:
        """Remember a claim (read back from the topic, or just made); a later claim of an id
        already remembered replaces its offset and keeps its time."""
        self._add(claim_key(webhook_id), offset, at)

    def _add(self, key: int | str, offset: int, at: float) -> None:
        if key in self.ids:
            self.ids[key] = offset
            return
        self.ids[key] = offset
        REMEMBERED.inc()
        second = int(at)
        if self.seconds and self.seconds[-1][0] >= second:
            self.seconds[-1][1] += 1  # an older time than the newest: kept as long as the newest
        else:
            self.seconds.append([second, 1])
        while len(self.ids) > self.max_ids:
            self._forget_oldest(1)
            FORGOTTEN.inc()

    def expire(self, now: float) -> None:
        """Forget the claims of every second that ended before the window."""
        cutoff = now - self.window_s
        while self.seconds and self.seconds[0][0] + 1 <= cutoff:
            self._forget_oldest(self.seconds[0][1])

    def _forget_oldest(self, count: int) -> None:
        for _ in range(count):
            self.ids.popitem(last=False)
            oldest = self.seconds[0]
            oldest[1] -= 1
            if not oldest[1]:
                self.seconds.popleft()
        REMEMBERED.dec(count)

    def clear(self) -> None:
        REMEMBERED.dec(len(self.ids))
        self.ids.clear()
        self.seconds.clear()


class Dedupe:
    """The claims of the ingest partitions this agent owns, loaded on assignment."""

    def __init__(
        self,
        settings: Settings,
        producer: AsyncProducer,
        durably: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
    ) -> None:
        """``durably(publish)``: the agent's way to run a send until Kafka acknowledges it."""
        self.settings = settings
        self.producer = producer
        self.durably = durably
        self.ingest_topic = settings.topic(INGEST)
        self.topic = settings.topic(IDEMPOTENCY)
        self.loads: dict[int, concurrent.futures.Future[Claims]] = {}
        self.topic_partitions = 0  # of the idempotency topic, known once a load read it
        self.closed = threading.Event()

    def assigned(self, partitions: list[Partition]) -> None:
        """On assignment (consumer thread): start reading back each ingest partition's claims."""
        for topic, partition in partitions:
            if topic == self.ingest_topic:
                self._start_load(partition)

    def revoked(self, partitions: list[Partition]) -> None:
        """On revocation, after the work in hand finished: forget the partitions' claims (their
        next owner reads them back)."""
        for topic, partition in partitions:
            if topic != self.ingest_topic:
                continue
            load = self.loads.pop(partition, None)
            if load is not None:
                load.cancel()
                if load.done() and not load.cancelled() and load.exception() is None:
                    load.result().clear()

    def close(self) -> None:
        self.closed.set()

    def _start_load(self, partition: int) -> concurrent.futures.Future[Claims]:
        future: concurrent.futures.Future[Claims] = concurrent.futures.Future()
        self.loads[partition] = future
        threading.Thread(
            target=self._load_into,
            args=(partition, future),
            name=f"idempotency-load-{partition}",
            daemon=True,
        ).start()
        return future

    async def admit(self, record: Webhook, msg: Message) -> bool:
        """False when ``record`` is a duplicate (counted; the caller drops it). A marked first
        attempt of the ingest topic claims its id first, durably; anything else passes."""
        if (
            record.attempt
            or record.subscription_id is None
            or msg.topic() != self.ingest_topic
            or not records.is_marked(record_headers(msg))
        ):
            return True
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        load = self.loads.get(partition) or self._start_load(partition)
        claims = load.result() if load.done() else await asyncio.wrap_future(load)
        prior = claims.claim(record.webhook_id, offset, time.time())
        if prior is not None and prior != offset:
            DUPLICATES.inc()
            log.info(
                "dropped %s at %s [%d] offset %d: a duplicate of offset %d",
                record.webhook_id,
                self.ingest_topic,
                partition,
                offset,
                prior,
            )
            return False
        # a new claim, or the claiming record redone: (re)write the claim before delivering
        value = f"{partition}/{offset}".encode()
        target = partition % self.topic_partitions if self.topic_partitions else partition
        await self.durably(
            lambda: self.producer.send(self.topic, value, record.webhook_id, partition=target)
        )
        return True

    def _load_into(self, partition: int, future: concurrent.futures.Future[Claims]) -> None:
        """Read the partition's claims back (on a thread of its own), retrying until Kafka
        answers; the future is cancelled when the partition is revoked meanwhile."""
        while not future.cancelled() and not self.closed.is_set():
            try:
                claims = self._read(partition)
            except KafkaException as exc:
                log.warning("reading the idempotency claims of partition %d: %s", partition, exc)
                time.sleep(LOAD_RETRY_S)
                continue
            if future.set_running_or_notify_cancel():
                future.set_result(claims)
            else:
                claims.clear()  # revoked while it loaded
            return

    def _read(self, partition: int) -> Claims:
        claims = Claims(self.settings.idempotency_window_s, self.settings.idempotency_max_ids)
        started = time.monotonic()
        consumer = Consumer(
            client_config(
                self.settings,
                {
                    "group.id": self.settings.group("agents.idempotency"),
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=QUERY_TIMEOUT_S).topics[self.topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
            self.topic_partitions = len(metadata.partitions)
            source = TopicPartition(self.topic, partition % self.topic_partitions)
            low, high = consumer.get_watermark_offsets(source, timeout=QUERY_TIMEOUT_S)
            if high > low:
                source.offset = low
                consumer.assign([source])
                self._read_until(consumer, claims, partition, high)
        finally:
            consumer.close()
        now = time.time()
        claims.expire(now)
        log.info(
            "idempotency claims of %s [%d]: %d ids read back in %.2f s",
            self.ingest_topic,
            partition,
            len(claims.ids),
            time.monotonic() - started,
        )
        return claims

    def _read_until(self, consumer: Consumer, claims: Claims, partition: int, high: int) -> None:
        cutoff = time.time() - self.settings.idempotency_window_s
        prefix = f"{partition}/".encode()
        while True:
            # a short wait: consume() returns only when it has 1,000 or the wait ended, and
            # the partition's marked records wait for this read (1 s each at a rebalance)
            for msg in consumer.consume(1000, READ_WAIT_S):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return
                    raise KafkaException(err)
                value, key = msg.value(), msg.key()
                offset = msg.offset()
                if offset is not None and offset >= high - 1:
                    high = -1  # the last one: stop after this batch
                if not value or not key or not value.startswith(prefix):
                    continue  # another ingest partition's claim (fewer idempotency partitions)
                at = msg.timestamp()[1] / 1000
                if at >= cutoff:
                    claims.add(key.decode(errors="replace"), int(value[len(prefix) :]), at)
            if high == -1:
                return
