"""The delivery loop: fetch ingest records, deliver each (bounded in flight, shared fairly
between subscriptions: :mod:`delivery_agents.shares`), publish the outcome, and let the offset
be committed once that is durable."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import aiohttp
from confluent_kafka import KafkaException, Message

from delivery_agents import http_delivery, metrics
from delivery_agents.auto_disable import AutoDisabler
from delivery_agents.breaker import Breaker, Breakers, CircuitPublisher
from delivery_agents.dedupe import Dedupe
from delivery_agents.due_assignment import DueMirror
from delivery_agents.ordering import Ordering
from delivery_agents.outcomes import Publisher, dead_letter, seconds_since
from delivery_agents.rate_limit import RateLimits
from delivery_agents.shares import URGENT, Shares
from delivery_agents.ssrf import GuardedResolver, parse_cidrs
from schemas import records
from schemas.records import RecordError, Webhook
from schemas.topics import CIRCUITS, DUE, INGEST
from webhookmaster import retry_ladder, tracing
from webhookmaster.consumer_thread import ConsumerThread
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
from webhookmaster.subscription_table import Subscription, SubscriptionTable

log = logging.getLogger(__name__)

# Fan-out records expanded at once: each holds one record per matching subscription (1,000
# subscribers of a 1 KB event: 1 MB) until Kafka acknowledges them.
EXPANSIONS = 4

T = TypeVar("T")
GROUP_ID = "agents"
DUE_GROUP_ID = "agents.due"  # stores the due consumers' offsets (never joined: DueMirror)
FETCH_BATCH = 500
CATCH_UP_S = 10.0  # longest wait for the subscription table before a webhook is refused
LOCAL_TRIES = 3  # tries of a record that raised before it is dead-lettered
LAG_EVERY_S = 2.0  # between two measures of the ingest lag gauge
RECHECK_S = 0.25  # while full: between two looks at the records waiting on slow subscriptions


class RecordRefused(Exception):
    """Kafka refused a record for good (its size); retrying the same send cannot help."""


class Agent:
    """One delivery agent process's work: a consumer in the agents' group and its deliveries."""

    def __init__(
        self, settings: Settings, table: SubscriptionTable, producer: AsyncProducer
    ) -> None:
        self.settings = settings
        self.table = table
        self.dedupe = Dedupe(settings, producer, self._durably)
        # retries that fell due: a consumer of their own, so that the ingest topic's backlog
        # (fetched and held, or queued in the client) is never in front of them; it reads the
        # due partitions matching the ingest assignment (delivery_agents/due_assignment.py)
        self.due_consumer = ConsumerThread(
            consumer_config(
                settings,
                settings.group(DUE_GROUP_ID),
                **{"fetch.wait.max.ms": 20, "queued.max.messages.kbytes": 4096},
            ),
            [],
            commit_interval_s=settings.kafka_commit_interval_s,
            count_assigned=False,
        )
        self.due_mirror = DueMirror(
            self.due_consumer,
            settings.topic(DUE),
            settings.request_timeout_s + 10,
            on_released=self._released,
        )
        self.consumer = ConsumerThread(
            consumer_config(
                settings,
                settings.group(GROUP_ID),
                **{
                    "fetch.wait.max.ms": 50,
                    "queued.max.messages.kbytes": 16384,
                    # small per-partition fetches interleave partitions (and so
                    # subscriptions) in each batch
                    "max.partition.fetch.bytes": 131072,
                },
            ),
            [settings.topic(INGEST)],
            on_assign=self._assigned,
            on_revoke=self._drain,
            commit_interval_s=settings.kafka_commit_interval_s,
        )
        self.due_mirror.attach(self.consumer)
        self.publisher = Publisher(
            producer,
            settings.topic_prefix,
            retry_ladder.tiers(settings.topic_prefix, settings.retry_ladder),
        )
        self.auto_disable = AutoDisabler(settings, table, producer)
        self.fifo = Ordering(settings, table, producer, self._deliver_fifo, self._durably)
        self.rate_limits = RateLimits()
        self.breakers = Breakers(
            functools.partial(
                Breaker,
                settings.breaker_failures,
                settings.breaker_ratio,
                settings.breaker_cooldown_s,
                settings.request_timeout_s + 30,
            ),
            CircuitPublisher(producer, settings.topic(CIRCUITS)),
            table.circuit,
        )
        self.ingest_topic = settings.topic(INGEST)
        self.networks = parse_cidrs(settings.allowed_cidrs)
        self.timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout_s, sock_connect=settings.connect_timeout_s
        )
        self.space = asyncio.Event()
        self.shares = Shares(settings.max_in_flight, settings.max_in_flight_per_subscription)
        self.capacity = settings.max_in_flight * 4  # records held: in flight or waiting a slot
        # ... besides up to this many waiting for a slow subscription's slot
        self.slow_backlog = self.capacity * 4
        self.held = 0
        self.expanding = asyncio.Semaphore(EXPANSIONS)
        self.waiting_turn = 0  # records waiting for their breaker or rate limit (no slot)
        self.due_held = 0  # due records in hand (at most max_in_flight)
        self.due_space = asyncio.Event()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Stop fetching; :meth:`run` finishes the work in hand, commits and returns."""
        self.stopping.set()
        self.fifo.stop()
        self.space.set()
        self.due_space.set()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_in_flight,
            limit_per_host=0,
            ttl_dns_cache=60,
            resolver=GuardedResolver(self.networks),
        )
        async with aiohttp.ClientSession(connector=connector, auto_decompress=True) as session:
            self.session = session
            self.loop = asyncio.get_running_loop()
            self.fifo.attach()
            loops = [asyncio.create_task(self.fifo.run())]
            await self.consumer.subscribe()  # its assignment assigns the due consumer's
            loops += [
                asyncio.create_task(self._fetch_loop()),
                asyncio.create_task(self._due_loop()),
            ]
            try:
                await asyncio.gather(*loops)
            finally:
                self.stop()
                await asyncio.gather(*loops, return_exceptions=True)
                await self._finish()

    async def _fetch_loop(self) -> None:
        next_lag = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + LAG_EVERY_S
                await self.consumer.call(self._measure_lag)
                await self.due_consumer.call(self.due_mirror.measure_lag)
            # records waiting for a slow subscription's slot do not stop the fetching
            # ... nor do those waiting for their subscription's breaker or rate limit
            room = min(
                self.capacity - (self.held - self.shares.slow_waiting() - self.waiting_turn),
                self.capacity + self.slow_backlog - self.held,
            )
            if room <= 0:
                self.space.clear()
                with contextlib.suppress(TimeoutError):  # lanes turn slow as time passes
                    await asyncio.wait_for(self.space.wait(), RECHECK_S)
                continue
            msgs = await self.consumer.consume(min(room, FETCH_BATCH), 0.1)
            self.held += self._start_all(msgs, self.consumer, self._finished, "ingest")

    async def _due_loop(self) -> None:
        """Fetch retries that fell due into a room of their own; each one's delivery goes to
        the head of its subscription's lane (:data:`URGENT`)."""
        URGENT.set(True)  # in this task's context, which the tasks it creates copy
        while not self.stopping.is_set():
            room = self.settings.max_in_flight - self.due_held
            if room <= 0:
                self.due_space.clear()
                await self.due_space.wait()
                continue
            msgs = await self.due_consumer.consume(min(room, FETCH_BATCH), 0.1)
            self.due_held += self._start_all(msgs, self.due_consumer, self._due_finished, "due")

    def _start_all(
        self,
        msgs: list[Message],
        consumer: ConsumerThread,
        finished: Callable[[asyncio.Task[None]], None],
        what: str,
    ) -> int:
        """Handle each fetched record of ``consumer`` in a task of its own; returns how many
        were started (error events are logged, not records)."""
        started = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                log.warning("consume (%s): %s", what, err.str())
                continue
            consumer.tracker.started(record_tp(msg), record_offset(msg))
            started += 1
            task = asyncio.create_task(self._handle(msg, consumer))
            if consumer is self.consumer:
                self.fifo.ticket(msg, task)  # FIFO records park in offset order
            self.tasks.add(task)
            task.add_done_callback(finished)
        return started

    def _due_finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.due_held -= 1
        self.due_space.set()

    def _measure_lag(self) -> None:
        """Set the ingest lag gauge: records beyond this agent's position on its partitions
        (on the consumer's thread)."""
        lag = 0
        try:
            for tp, position in self.consumer.positions(sorted(self.consumer.assigned)).items():
                _, high = self.consumer.watermarks(tp)
                if position >= 0 and high >= 0:
                    lag += max(0, high - position)
        except KafkaException as exc:  # revoked meanwhile, broker away: measured next time
            log.debug("ingest lag: %s", exc)
            return
        metrics.INGEST_LAG.set(lag)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.held -= 1
        self.space.set()

    async def _finish(self) -> None:
        if self.tasks:
            grace = self.settings.request_timeout_s + 10
            _, late = await asyncio.wait(self.tasks, timeout=grace)
            for task in late:  # their records stay uncommitted and are redone after restart
                task.cancel()
        await self.consumer.close()
        await self.due_consumer.close()
        self.dedupe.close()

    def _assigned(self, partitions: list[Partition]) -> None:
        """On assignment (consumer thread): read the matching due partitions, load their
        de-duplication claims and FIFO queues."""
        self.due_mirror.assigned(partitions)
        self.dedupe.assigned(partitions)
        self.fifo.assigned(partitions)  # their parked partitions too

    def _drain(self, partitions: list[Partition]) -> None:
        """On revocation (consumer thread): let the partitions' ingest and due work in hand
        finish (bounded), release their due partitions, then their de-duplication claims and
        FIFO queues."""
        self.due_mirror.revoked(partitions)
        self.dedupe.revoked(partitions)
        self.fifo.revoked(partitions)

    def _released(self, sub_ids: list[str]) -> None:
        """Partitions moved away (consumer thread): forget their subscriptions' breakers and
        pacers, on the event loop."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._forget, sub_ids)

    def _forget(self, sub_ids: list[str]) -> None:
        self.breakers.forget(sub_ids)
        self.rate_limits.forget(sub_ids)

    async def _handle(self, msg: Message, consumer: ConsumerThread | None = None) -> None:
        """Process ``msg`` to a durable outcome, then let its offset be committed. An
        unexpected error is tried again a few times, then the record is dead-lettered: no
        record can hold its partition's offset open. Only a stop while Kafka does not
        acknowledge leaves it uncommitted (redone after restart)."""
        tp = record_tp(msg)
        for attempt in range(1, LOCAL_TRIES + 1):
            try:
                await self._process(msg)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ProduceError) and self.stopping.is_set():
                    return  # not acknowledged while stopping: redone after restart
                log.exception(
                    "record %s/%d@%d failed (try %d of %d)", *tp, msg.offset(), attempt, LOCAL_TRIES
                )
                if attempt == LOCAL_TRIES:
                    if not await self._dead_letter_failure(msg, exc):
                        return
                else:
                    await asyncio.sleep(0.2 * attempt)
        (consumer or self.consumer).tracker.done(tp, record_offset(msg))

    async def _dead_letter_failure(self, msg: Message, exc: Exception) -> bool:
        """Dead-letter a record that kept failing, with its value as text (left out when Kafka
        refuses the letter's size); False when the agent stopped first."""
        metrics.DEAD_LETTERED.labels("error").inc()
        reason = f"processing failed: {type(exc).__name__}: {exc}"
        for raw in (msg.value(), None):
            letter = dead_letter(
                reason
                if raw is not None
                else f"{reason} (value left out: too large for the dead-letter topic)",
                None,
                msg,
                raw,
            )
            try:
                await self._durably(
                    functools.partial(self.publisher.dead_letter, letter, msg.key())
                )
                return True
            except RecordRefused:
                continue
            except ProduceError:
                return False
        return False

    async def _process(self, msg: Message) -> None:
        def fallback_id() -> str:
            topic, partition = record_tp(msg)
            return records.derived_id(topic, f"{partition}/{record_offset(msg)}")

        def fallback_time() -> str:
            return records.iso(datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC))

        try:
            record = records.parse_webhook(
                msg.value(), record_headers(msg), fallback_id, fallback_time
            )
        except RecordError as exc:
            metrics.DEAD_LETTERED.labels("unreadable").inc()
            letter = dead_letter(f"unreadable record: {exc}", None, msg, msg.value())
            await self._durably(lambda: self.publisher.dead_letter(letter, msg.key()))
            return
        if record.subscription_id is None:
            await self._fan_out(record, msg)
        elif not await self.dedupe.admit(record, msg):
            return  # a duplicate is dropped (dedupe.py)
        elif msg.topic() == self.ingest_topic and await self.fifo.park(record, msg):
            return  # a FIFO subscription's: delivered from its key's queue (ordering.py)
        else:
            await self._deliver(record, msg)

    async def _fan_out(self, record: Webhook, msg: Message) -> None:
        """Expand a fan-out record (produced straight to Kafka, keyed by its own id) into one
        ingest record per matching active subscription, keyed by the subscription: so every
        delivery of a subscription comes from its own partition, which one agent owns at a time
        (rate limits, auto-disable and the circuit breaker are per subscription). Each carries
        the idempotency marker with its derived id: an expansion redone (a crash before the
        commit, the same event sent again) is dropped where it meets the first (dedupe.py).
        At most :data:`EXPANSIONS` expand at once: an agent's memory holds that many events'
        records, not one per fan-out record it fetched."""
        async with self.expanding:
            await self._expand(record)

    async def _expand(self, record: Webhook) -> None:
        subs = [s.id for s in self.table.matching(record.event_type)]
        if not subs:
            log.info(
                "fan-out event %s (%s) matches no active subscription",
                record.webhook_id,
                record.event_type,
            )
            return
        # one header list shaped for all: only the two ids differ from one record to the next
        template = [
            *record.replace(subscription_id="", webhook_id="").headers(),
            records.IDEMPOTENT,
        ]
        at_id = [name for name, _ in template].index(records.H_WEBHOOK_ID)
        at_sub = [name for name, _ in template].index(records.H_SUBSCRIPTION_ID)
        batch = []
        for sub_id, webhook_id in zip(
            subs, records.derived_ids(record.webhook_id, subs), strict=True
        ):
            headers = template.copy()
            headers[at_id] = (records.H_WEBHOOK_ID, webhook_id.encode())
            headers[at_sub] = (records.H_SUBSCRIPTION_ID, key := sub_id.encode())
            batch.append((record.body, key, headers))
        topic = self.ingest_topic
        await self._durably(lambda: self.publisher.producer.send_all(topic, batch))

    async def _deliver(self, record: Webhook, msg: Message) -> None:
        """Deliver ``record`` once: under a consumer span that continues its trace when tracing
        is on."""
        if not tracing.enabled():
            await self._attempt(record, msg)
            return
        attributes = {
            "webhookmaster.webhook_id": record.webhook_id,
            "webhookmaster.subscription_id": record.subscription_id,
            "webhookmaster.event_type": record.event_type,
            "webhookmaster.attempt": record.attempt + 1,
        }
        with tracing.span(
            f"deliver {record.event_type}", "consumer", record.traceparent, attributes
        ):
            await self._attempt(record, msg)

    async def _deliver_fifo(self, record: Webhook, msg: Message) -> tuple[str, datetime | None]:
        """One attempt of a FIFO key's head; its retry waits in :mod:`delivery_agents.ordering`."""
        return await self._attempt(record, msg, to_tier=False)

    async def _attempt(
        self, record: Webhook, msg: Message, to_tier: bool = True
    ) -> tuple[str, datetime | None]:
        """One attempt; returns its outcome and when the next one is due (retrying)."""
        sub_id = record.subscription_id
        assert sub_id is not None
        self.due_mirror.note(sub_id, record_tp(msg)[1])
        sub, reason = self._refusal(sub_id, record.event_type)
        if reason is not None:
            # The table may not have read a subscription written just before this webhook
            # (created, activated or widened an instant ago): catch up, then decide.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.table.wait_caught_up, CATCH_UP_S)
            sub, reason = self._refusal(sub_id, record.event_type)
        if reason is not None or sub is None:
            metrics.DEAD_LETTERED.labels("subscription").inc()
            letter = dead_letter(reason or "", record, msg)
            await self._durably(lambda: self.publisher.dead_letter(letter, sub_id.encode()))
            return "failed", None
        headers = http_delivery.headers_for(
            record.webhook_id,
            record.event_type,
            sub.secret_key,
            record.body,
            sub.previous_secret_valid(),
            record.attempt + 1,
        )
        assert self.session is not None
        async with contextlib.AsyncExitStack() as turns:
            # waits for the breaker and the rate limit come before the lane: they hold no
            # delivery slot, and the fetch loop does not count them as held
            ingest = not URGENT.get()  # a due record is counted in due_held instead
            self.waiting_turn += ingest
            self.space.set()
            try:
                probe = await turns.enter_async_context(self.breakers.turn(sub_id))
                await turns.enter_async_context(self.rate_limits.turn(sub_id, sub.rate_limit))
            finally:
                self.waiting_turn -= ingest
            async with self.shares.slot(sub_id):
                await self.rate_limits.spaced(sub_id, sub.rate_limit)
                started = datetime.now(UTC)
                result = await self._post(sub, headers, record)
        if result.status_code == 410:  # the endpoint is gone: not retried, it disables below
            result = dataclasses.replace(result, retryable=False)
        with tracing.span("publish outcome", "producer") as trace:
            if trace is not None:
                record = record.replace(traceparent=trace)  # a retry continues from here
            outcome, next_at = await self._durably(
                lambda: self.publisher.outcome_at(record, sub, started, result, msg, to_tier)
            )
            tracing.annotate({"webhookmaster.outcome": outcome})
        await self._observe(sub, result, probe)
        metrics.attempts(outcome, result.status_code).inc()
        metrics.DURATION.observe(result.duration_ms / 1000)
        if outcome == "delivered":
            metrics.END_TO_END.observe(max(0.0, seconds_since(record.received_at)))
        elif outcome == "failed":
            metrics.DEAD_LETTERED.labels("exhausted").inc()
        return outcome, next_at

    async def _post(
        self, sub: Subscription, headers: dict[str, str], record: Webhook
    ) -> http_delivery.AttemptResult:
        """The delivery's request (in a delivery slot)."""
        assert self.session is not None
        metrics.IN_FLIGHT.inc()
        try:
            with tracing.span("POST", "client", None, {"url.full": sub.target_url}) as trace:
                if trace is not None:
                    headers[tracing.HEADER] = trace
                result = await http_delivery.post(
                    self.session, sub.target_url, headers, record.body, self.timeout, self.networks
                )
                tracing.annotate({"http.response.status_code": result.status_code})
                return result
        finally:
            metrics.IN_FLIGHT.dec()

    async def _observe(
        self, sub: Subscription, result: http_delivery.AttemptResult, probe: bool
    ) -> None:
        """Let the breaker and auto-disable account the attempt; a failure to disable is
        logged, and the next failed attempt tries again (the outcome is already durable)."""
        self.breakers.record(sub.id, not result.delivered, probe)
        try:
            await self.auto_disable.observe(sub, result.delivered, result.status_code)
        except (ProduceError, KafkaException) as exc:
            log.warning("could not auto-disable subscription %s: %s", sub.id, exc)

    def _refusal(self, sub_id: str, event_type: str) -> tuple[Subscription | None, str | None]:
        """The subscription, and why it cannot take this webhook (None when it can)."""
        sub = self.table.get(sub_id)
        if sub is None:
            return None, f"subscription {sub_id} does not exist (deleted?)"
        if not sub.is_active:
            disabled = f" (disabled: {sub.disabled_reason})" if sub.disabled_reason else ""
            return sub, f"subscription {sub_id} is inactive{disabled}"
        if not sub.accepts(event_type):
            return sub, f"subscription {sub_id} does not take event type {event_type!r}"
        return sub, None

    async def _durably(self, publish: Callable[[], Awaitable[T]]) -> T:
        """Run ``publish()``; when Kafka did not acknowledge, run it again (backoff up to 10 s)
        until it is acknowledged or the agent stops. A retried send may duplicate a record,
        never lose one. A refusal that no retry can change (a record too large for the
        topic) raises :class:`RecordRefused` at once."""
        delay = 0.5
        while True:
            try:
                return await publish()
            except ProduceError as exc:
                if exc.permanent:
                    raise RecordRefused(str(exc)) from exc
                if self.stopping.is_set():
                    raise
                log.warning("publishing an outcome failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
