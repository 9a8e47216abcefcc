"""A confluent-kafka consumer driven from asyncio: the one bridge of the agents, the scheduler and
the status projector.

librdkafka consumers are not safe to call from several threads, so every call runs on one
dedicated thread; the event loop awaits them. Rebalance callbacks fire on that thread too, inside
``consume``: on revocation the owner's ``on_revoke`` is given the partitions and may block that
thread (not the loop) while in-flight work of those partitions finishes, then the committable
offsets are committed before the partitions are released. Only offsets whose records the owner
marked done in :attr:`ConsumerThread.tracker` are ever committed (at least once).

Between rebalances, commits are asynchronous and coalesced (:class:`CommitPacer`): before a
fetch, the offsets that advanced are sent when no commit is in flight and ``commit_interval_s``
passed since the last one. A commit before every fetch would queue commit requests on the group
coordinator's connection faster than the broker answers them, and the group heartbeat, waiting
behind them, would time out (the member fenced, its work redone).

An owner that stops fetching (every slot busy, a write that waits) would exceed librdkafka's
``max.poll.interval.ms`` and leave the group (seen with an agent whose deliveries stalled for
five minutes under broker overload). So once no fetch came for :data:`IDLE_POLL_S`, the
bridge's thread pauses the partitions, polls (serving rebalances, commit answers and the poll
deadline) and rewinds any record that still came, until the owner's next fetch resumes them.

An optional :class:`Watchdog` replaces a consumer that stopped fetching: librdkafka can come out
of a broker restart with its broker handles or partitions stuck (seen with a single broker
restarting under load: no record fetched, no error, ever again). When no record came for
``stall_s`` and two checks ``check_every_s`` apart see the same sign (an assigned, not paused
partition with records beyond this consumer's position, or this consumer unable to query a
cluster that a new client reaches), the consumer is closed and a new one joins the group; it
resumes from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import Gauge

from webhookmaster.commit_pacer import CommitPacer
from webhookmaster.offsets import OffsetTracker, Partition

log = logging.getLogger(__name__)
T = TypeVar("T")
WARN_EVERY_S = 60.0
COMMIT_INTERVAL_S = 0.5  # default of WM_KAFKA_COMMIT_INTERVAL (settings.py)
COMMIT_TIMEOUT_S = 30.0  # an asynchronous commit with no answer by then no longer holds the next
IDLE_POLL_S = 10.0  # no fetch for this long: the bridge polls with the partitions paused

ASSIGNED = Gauge(
    "webhookmaster_assigned_partitions", "Partitions this process's consumer group member owns."
)


class FatalConsumerError(Exception):
    """librdkafka reported a fatal error: this consumer cannot go on (the process exits)."""


@dataclass
class Watchdog:
    """When and how often to check for a stuck consumer, and what the checks found."""

    stall_s: float = 20.0  # idle this long: start checking whether records wait
    check_every_s: float = 10.0  # between two checks; a stuck consumer is replaced at the second
    query_timeout_s: float = 5.0
    checks: int = 0  # checks run
    replaced: int = 0  # consumers replaced
    progress_at: float = field(default_factory=time.monotonic)  # last record or commit
    checked_at: float = field(default_factory=time.monotonic)
    suspect: tuple[Any, ...] | None = None  # the sign seen at the last check


class ConsumerThread:
    """One consumer, one thread, one :class:`OffsetTracker` whose committable offsets are
    committed asynchronously before a fetch (at most one commit in flight, at most one every
    ``commit_interval_s``), and synchronously on :meth:`commit`, every revocation and close."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        on_assign: Callable[[list[Partition]], None] | None = None,
        on_revoke: Callable[[list[Partition]], None] | None = None,
        watchdog: Watchdog | None = None,
        report_errors: bool = False,
        count_assigned: bool = True,
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        """``report_errors``: log the client's error events, each text at most once a minute
        (a broker away would otherwise fill the log). ``count_assigned``: this consumer's
        partitions are the ``webhookmaster_assigned_partitions`` gauge (a process's second
        consumer leaves it to the first). ``commit_interval_s``: least time between two
        asynchronous commits (``WM_KAFKA_COMMIT_INTERVAL``)."""
        self.tracker = OffsetTracker()
        self.pacer = CommitPacer(commit_interval_s, COMMIT_TIMEOUT_S)
        self._config = {**config, "on_commit": self._on_commit}
        if report_errors:
            self._config["error_cb"] = self._on_error
        self._consumer = Consumer(self._config)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kafka-consumer")
        self._topics = topics
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.watchdog = watchdog
        self.count_assigned = count_assigned
        self.assigned: set[Partition] = set()
        self.paused: set[Partition] = set()  # paused by the owner (the watchdog leaves them be)
        self.subscribed = False
        self.joined = False  # a group member now (assigned partitions, possibly none)
        self._warned: dict[str, float] = {}
        self.held: set[Partition] = set()  # paused by the bridge while the owner does not fetch
        self.idle_polls = 0
        self._fetched_at = time.monotonic()
        self._idle_pending = False
        self._stop_idle = threading.Event()
        self._idle_thread: threading.Thread | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the consumer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the consumer's thread and wait for it: from another thread (e.g.
        a rebalance callback of another consumer), never from this consumer's own thread."""
        return self._executor.submit(fn, *args).result()

    def assign(self, tps: list[Partition]) -> None:
        """Add partitions to a consumer that is not subscribed (manual assignment, offsets
        from the group's committed ones). On the consumer's thread."""
        new = [tp for tp in tps if tp not in self.assigned]
        if not new:
            return
        self._consumer.incremental_assign([TopicPartition(t, p) for t, p in new])
        self.assigned.update(new)
        if self.count_assigned:
            ASSIGNED.set(len(self.assigned))
        log.info("assigned %s", _describe(new))
        if self._on_assign:
            self._on_assign(new)

    def unassign(self, tps: list[Partition], commit: bool = True) -> None:
        """Remove manually assigned partitions: the owner's ``on_revoke``, then (``commit``)
        commit what is committable, then release them. On the consumer's thread."""
        gone = [tp for tp in tps if tp in self.assigned]
        if not gone:
            return
        log.info("unassigning %s", _describe(gone))
        self._release(gone, commit)
        self._consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])

    async def subscribe(self) -> None:
        await self.call(self._subscribe)
        self.subscribed = True
        self._idle_thread = threading.Thread(
            target=self._watch_idle, name="kafka-consumer-idle", daemon=True
        )
        self._idle_thread.start()

    def _watch_idle(self) -> None:
        """Every half :data:`IDLE_POLL_S`, have the consumer's thread poll if the owner has not
        fetched for that long (one such call queued at a time)."""
        while not self._stop_idle.wait(IDLE_POLL_S / 2):
            if self._idle_pending or time.monotonic() - self._fetched_at < IDLE_POLL_S:
                continue
            self._idle_pending = True
            try:
                self._executor.submit(self._idle_poll)
            except RuntimeError:
                return  # shut down

    def _idle_poll(self) -> None:
        """On the consumer's thread, while the owner does not fetch: pause what is not paused,
        poll once, and rewind to any record that came anyway (it is fetched again later)."""
        try:
            if self._stop_idle.is_set() or time.monotonic() - self._fetched_at < IDLE_POLL_S:
                return
            fresh = sorted(self.assigned - self.paused - self.held)
            if fresh:
                self._consumer.pause([TopicPartition(t, p) for t, p in fresh])
                self.held.update(fresh)
            self._commit_async()
            self.idle_polls += 1
            msg = self._consumer.poll(0)
            if msg is not None and msg.error() is None:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is not None and partition is not None and offset is not None:
                    self._consumer.seek(TopicPartition(topic, partition, offset))
        except (KafkaException, RuntimeError) as exc:
            log.debug("idle poll: %s", exc)
        finally:
            self._idle_pending = False

    def _resume_held(self) -> None:
        """The owner fetches again: resume what the bridge paused (not what the owner did)."""
        back = sorted((self.held & self.assigned) - self.paused)
        self.held.clear()
        if back:
            self._consumer.resume([TopicPartition(t, p) for t, p in back])

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer closing
        self.joined = True
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.assigned.update(tps)
        if self.count_assigned:
            ASSIGNED.set(len(self.assigned))
        if tps:
            log.info("assigned %s", _describe(tps))
        if self._on_assign:
            self._on_assign(tps)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        tps = [(tp.topic, tp.partition) for tp in partitions]
        if tps:
            log.info("revoking %s", _describe(tps))
        self._release(tps, commit=True)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        self.joined = False  # until the group assigns again
        tps = [(tp.topic, tp.partition) for tp in partitions]
        log.warning("lost %s (no longer a group member)", _describe(tps))
        self._release(tps, commit=False)  # no longer ours to commit: the next owner redoes

    def _release(self, tps: list[Partition], commit: bool) -> None:
        """The owner's ``on_revoke`` (work in hand may finish), then commit what is committable
        and forget the partitions."""
        if self._on_revoke and tps:
            self._on_revoke(tps)
        if commit:
            self._commit()
        for tp in tps:
            self.tracker.forget(tp)
            self.pacer.forget(tp)
            self.assigned.discard(tp)
            self.paused.discard(tp)
            self.held.discard(tp)
        if self.count_assigned:
            ASSIGNED.set(len(self.assigned))

    def _commit(self) -> None:
        """Commit every committable offset now and wait for the broker's answer."""
        self.pacer.offer(self.tracker.committable())
        offsets = self.pacer.take_all(self.assigned)
        if not offsets:
            return
        try:
            result = self._consumer.commit(offsets=_tps(offsets), asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed (records will be redone): %s", _text(exc))
            self.pacer.settled({}, offsets)
            return
        self._settle(None, result or [])

    def _commit_async(self) -> None:
        """Send the offsets that advanced, unless a commit is in flight or was sent less than
        ``commit_interval_s`` ago; its answer comes to :meth:`_on_commit` inside a fetch."""
        self.pacer.offer(self.tracker.committable())
        offsets = self.pacer.take(time.monotonic(), self.assigned)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=_tps(offsets), asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit failed (tried again later): %s", _text(exc))
            self.pacer.settled({}, offsets)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to an asynchronous commit (on the consumer's thread)."""
        self._settle(err, partitions)

    def _settle(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        done: dict[Partition, int] = {}
        failed: dict[Partition, int] = {}
        for tp in partitions:
            bad = err is not None or tp.error is not None
            (failed if bad else done)[(tp.topic, tp.partition)] = tp.offset
        if failed:
            why = err.str() if err is not None else _first_error(partitions)
            log.warning("offset commit failed (tried again, else redone): %s", why)
        self.pacer.settled(done, failed)

    def _consume(self, max_records: int, timeout: float, fill: bool) -> list[Message]:
        self._fetched_at = time.monotonic()
        if self.held:
            self._resume_held()
        self._commit_async()  # revocation, commit() and close commit synchronously
        if fill:
            messages = self._consumer.consume(max_records, timeout)
        else:
            # consume(n, t) waits until n records are there or t passed: at low load every
            # record would wait the whole t. Wait for the first record only, then take what is
            # queued.
            first = self._consumer.poll(timeout)
            if first is None:
                messages = []
            elif max_records > 1:
                messages = [first, *self._consumer.consume(max_records - 1, 0)]
            else:
                messages = [first]
        if self.watchdog is not None:
            if any(m.error() is None for m in messages):
                self.watchdog.progress_at = time.monotonic()
            else:
                self._watch(self.watchdog)
        return messages

    async def consume(self, max_records: int, wait_s: float, fill: bool = False) -> list[Message]:
        """Commit what is committable, then fetch up to ``max_records``: as soon as one is
        there, with whatever else is already queued, or none after ``wait_s``. With ``fill``,
        wait up to ``wait_s`` for ``max_records`` (a batch writer that wants full batches)."""
        return await self.call(self._consume, max_records, wait_s, fill)

    async def commit(self) -> None:
        """Commit what is committable now, waiting for the broker's answer."""
        await self.call(self._commit)
        if self.watchdog is not None:
            self.watchdog.progress_at = time.monotonic()

    def records(self, messages: list[Message]) -> list[Message]:
        """The records of ``messages``: error events are dropped and logged (each text at most
        once a minute); a fatal one raises :class:`FatalConsumerError`."""
        found = []
        for msg in messages:
            err = msg.error()
            if err is None:
                found.append(msg)
            elif err.fatal():
                raise FatalConsumerError(err.str())
            elif err.code() != KafkaError._PARTITION_EOF:
                self._warn_limited(f"consume: {err.str()}")
        return found

    def _on_error(self, err: KafkaError) -> None:
        self._warn_limited(f"Kafka: {err.str()}")

    def _warn_limited(self, text: str) -> None:
        now = time.monotonic()
        if self._warned.get(text, -WARN_EVERY_S) + WARN_EVERY_S <= now:
            self._warned[text] = now
            log.warning("%s", text)

    def pause(self, tps: list[Partition]) -> None:
        """Pause partitions (call on the consumer's thread, e.g. via :meth:`call`)."""
        self._consumer.pause([TopicPartition(t, p) for t, p in tps])
        self.paused.update(tps)
        self.held.difference_update(tps)

    def resume(self, tps: list[Partition]) -> None:
        self._consumer.resume([TopicPartition(t, p) for t, p in tps])
        self.paused.difference_update(tps)
        self.held.difference_update(tps)

    def seek(self, tp: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(tp[0], tp[1], offset))

    def watermarks(self, tp: Partition) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)

    def positions(self, tps: list[Partition]) -> dict[Partition, int]:
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.position([TopicPartition(t, p) for t, p in tps])
        }

    def lag(self) -> dict[Partition, int]:
        """Records beyond the position of each assigned partition that has one (cached high
        watermarks; on the consumer's thread)."""
        lag = {}
        for tp, position in self.positions(sorted(self.assigned)).items():
            _low, high = self.watermarks(tp)
            if position >= 0 and high >= 0:
                lag[tp] = max(0, high - position)
        return lag

    def _watch(self, dog: Watchdog) -> None:
        """On an idle fetch, once ``stall_s`` passed without a record: every
        ``check_every_s``, look for a sign that the consumer is stuck; the same sign at two
        checks in a row (no record in between) replaces the consumer. One sign alone may be a
        record not fetched yet."""
        now = time.monotonic()
        if now - dog.progress_at < dog.stall_s:
            dog.suspect = None
            return
        if now - dog.checked_at < dog.check_every_s:
            return
        dog.checked_at = now
        dog.checks += 1
        found = self._stuck(dog.query_timeout_s)
        if found is None or found[0] != dog.suspect:
            dog.suspect = found[0] if found else None
            return
        log.warning(
            "the Kafka consumer fetched nothing for %.0f s although %s; replacing it "
            "(it resumes from the committed offsets)",
            now - dog.progress_at,
            found[1],
        )
        self._replace()
        dog.replaced += 1
        dog.suspect = None
        dog.progress_at = time.monotonic()

    def _stuck(self, timeout: float) -> tuple[tuple[Any, ...], str] | None:
        """A sign that the consumer is stuck, as (key, text): records wait beyond its position
        on an assigned partition the owner did not pause, or it cannot query a cluster that
        answers a new client."""
        try:
            assignment = [
                tp
                for tp in self._consumer.assignment()
                if (tp.topic, tp.partition) not in self.paused
            ]
            if not assignment:
                return None
            positions = self._consumer.position(assignment)
            unread = [tp for tp in positions if tp.offset < 0]
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in (self._consumer.committed(unread, timeout=timeout) if unread else [])
            }
            for tp in positions:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
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
            if _cluster_answers(self._config, timeout):
                return ("unreachable",), f"it cannot query the cluster ({exc}), a new client can"
            return None  # the cluster is away: nothing to fetch anyway

    def _replace(self) -> None:
        """Release the partitions (uncommitted work is redone), close the stuck consumer (in
        the background: a stuck close must not block) and subscribe a new one to the group."""
        old = self._consumer
        self._consumer = Consumer(self._config)  # from here on, the old one's callbacks are ignored
        self.joined = False
        self._release(sorted(self.assigned), commit=False)
        self.paused.clear()
        self.held.clear()
        self.pacer.reset()
        self._subscribe()
        threading.Thread(
            target=_close_quietly, args=(old,), name="kafka-consumer-close", daemon=True
        ).start()

    async def close(self) -> None:
        """Commit, leave the group (revocation callbacks run), stop the thread."""
        self._stop_idle.set()
        await self.call(self._commit)
        await self.call(self._close)
        self._executor.shutdown(wait=True)
        if self._idle_thread is not None:
            self._idle_thread.join(timeout=IDLE_POLL_S)

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


# Consumer-only properties (and callbacks) an admin probe must not get.
_CONSUMER_ONLY = ("group.", "partition.assignment", "enable.auto", "auto.offset", "max.poll", "on_")


def _cluster_answers(consumer_config: dict[str, Any], timeout: float) -> bool:
    """True when a new client, connecting as the consumer does (security settings included),
    gets the cluster's metadata."""
    config = {k: v for k, v in consumer_config.items() if not k.startswith(_CONSUMER_ONLY)}
    admin = AdminClient({**config, "log_level": 0, "socket.connection.setup.timeout.ms": 2000})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def _tps(offsets: dict[Partition, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, off) for (t, p), off in sorted(offsets.items())]


def _first_error(partitions: list[TopicPartition]) -> str:
    return next((str(tp.error) for tp in partitions if tp.error is not None), "?")


def _text(exc: KafkaException) -> str:
    return exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)


def _describe(tps: list[Partition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in tps:
        by_topic.setdefault(topic, []).append(partition)
    return "; ".join(f"{t} {sorted(p)}" for t, p in sorted(by_topic.items()))
