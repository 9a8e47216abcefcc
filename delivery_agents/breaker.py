"""Circuit breaker per subscription, owned by the agent that delivers the subscription (its
records are keyed by the subscription, so one agent at a time).

``closed``: deliveries go. Once the last ``WM_BREAKER_FAILURES`` attempts are known and at least
``WM_BREAKER_RATIO`` of them failed (1.0: that many failures in a row), it **opens**: deliveries
wait (not attempts, never failed for it). After ``WM_BREAKER_COOLDOWN`` seconds it is
``half_open``: exactly one delivery goes as the probe while the others keep waiting; the probe's
success closes the breaker, its failure opens it for another cool-down. A probe whose result
never comes (the agent failed to publish it) frees the probe turn after the request timeout plus
30 s. Every change of state is handed to ``on_change`` (published to the circuits topic), and an
agent that takes a subscription over builds its breaker from the state last published there
(open until the cool-down counted from its ``since``; half-open: one probe at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import Counter, Gauge

from schemas import records
from webhookmaster.kafka_clients import AsyncProducer, ProduceError

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")

CIRCUITS = Gauge(
    "webhookmaster_circuits",
    "Subscriptions this agent has delivered to, by the state of their circuit breaker.",
    ["state"],
)
TRANSITIONS = Counter(
    "webhookmaster_circuit_transitions_total",
    "Circuit breaker state changes, by the state entered.",
    ["state"],
)
for _state in STATES:
    CIRCUITS.labels(_state)
    TRANSITIONS.labels(_state)


class Breaker:
    """One subscription's breaker."""

    def __init__(
        self,
        window: int,
        ratio: float,
        cooldown_s: float,
        probe_timeout_s: float,
        on_change: Callable[[Breaker], None],
    ) -> None:
        self.on_change = on_change
        self.window = window
        self.ratio = ratio
        self.cooldown_s = cooldown_s
        self.probe_timeout_s = probe_timeout_s
        self.results: deque[bool] = deque(maxlen=window)  # True: failed
        self.state: State = "closed"
        self.since = time.time()
        self.opened_at = 0.0  # monotonic
        self.probe_at: float | None = None  # monotonic start of the probe in flight
        self.changed = asyncio.Event()

    def _enter(self, state: State) -> None:
        CIRCUITS.labels(self.state).dec()
        CIRCUITS.labels(state).inc()
        TRANSITIONS.labels(state).inc()
        self.state = state
        self.since = time.time()
        if state == "open":
            self.opened_at = time.monotonic()
        self.probe_at = None
        self.changed.set()
        self.changed = asyncio.Event()
        self.on_change(self)

    async def admit(self) -> bool:
        """Return when a delivery may go; True when it goes as the half-open probe."""
        while True:
            now = time.monotonic()
            if self.state == "closed":
                return False
            if self.state == "open":
                left = self.opened_at + self.cooldown_s - now
                if left <= 0:
                    self._enter("half_open")
                    continue
                wait_s = left
            elif self.probe_at is None or now - self.probe_at > self.probe_timeout_s:
                self.probe_at = now
                return True
            else:
                wait_s = self.probe_at + self.probe_timeout_s - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(wait_s, 0.001))

    def restore(self, state: State, since: float) -> None:
        """Take over the state a previous owner published (``since``: epoch seconds): an open
        breaker stays open until its cool-down, counted from ``since``, has passed; a half-open
        one lets one probe go. Not published again (nothing changed)."""
        self.state = state
        self.since = since
        if state == "open":
            self.opened_at = time.monotonic() - max(0.0, time.time() - since)

    def record(self, failed: bool, probe: bool) -> None:
        """Account one attempt's result."""
        if self.state == "half_open":
            if probe:
                self.results.clear()
                self._enter("open" if failed else "closed")
            return
        if self.state != "closed":
            return  # a result of a delivery admitted before the breaker opened
        self.results.append(failed)
        if len(self.results) == self.window and sum(self.results) >= self.ratio * self.window:
            self._enter("open")


class Breakers:
    """The breakers of the subscriptions this agent delivers."""

    def __init__(
        self,
        make: Callable[[Callable[[Breaker], None]], Breaker],
        on_change: Callable[[str, Breaker], None],
        published: Callable[[str], dict[str, str | None]] | None = None,
    ) -> None:
        """``make(on_change)`` builds one subscription's breaker (its settings bound);
        ``published(sub_id)``: the state last published to the circuits topic
        (``{"state", "since"}``, as :meth:`SubscriptionTable.circuit` gives it), which a new
        breaker takes over."""
        self.make = make
        self.on_change = on_change
        self.published = published
        self.breakers: dict[str, Breaker] = {}

    def get(self, sub_id: str) -> Breaker:
        breaker = self.breakers.get(sub_id)
        if breaker is None:
            breaker = self.make(functools.partial(self.on_change, sub_id))
            self._restore(sub_id, breaker)
            self.breakers[sub_id] = breaker
            CIRCUITS.labels(breaker.state).inc()
        return breaker

    def _restore(self, sub_id: str, breaker: Breaker) -> None:
        """Take over an open or half-open state published by the subscription's previous
        owner (another agent, or this one before a rebalance)."""
        if self.published is None:
            return
        found = self.published(sub_id)
        state, since = found.get("state"), found.get("since")
        if state not in ("open", "half_open") or since is None:
            return
        try:
            at = records.parse_time(since).timestamp()
        except ValueError:
            log.warning("circuit of %s: unreadable since %r; starting closed", sub_id, since)
            return
        breaker.restore("open" if state == "open" else "half_open", at)
        log.info("circuit of %s restored %s (since %s)", sub_id, state, since)

    def forget(self, sub_ids: list[str]) -> None:
        """Drop the breakers of subscriptions this agent no longer delivers (their partitions
        moved): a later owner, this agent included, restores them from the circuits topic."""
        for sub_id in sub_ids:
            breaker = self.breakers.pop(sub_id, None)
            if breaker is not None:
                CIRCUITS.labels(breaker.state).dec()

    @contextlib.asynccontextmanager
    async def turn(self, sub_id: str) -> AsyncIterator[bool]:
        """Wait for the breaker to let a delivery go; yields True for the probe."""
        yield await self.get(sub_id).admit()

    def record(self, sub_id: str, failed: bool, probe: bool) -> None:
        self.get(sub_id).record(failed, probe)


class CircuitPublisher:
    """Publishes each state change to the compacted circuits topic (key: the subscription id),
    which every subscription table follows: the gateway shows it on the subscription. Sends
    are started in the order of the changes; one that Kafka refuses is logged (the next change
    publishes the state again)."""

    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, sub_id: str, breaker: Breaker) -> None:
        value = {
            "subscription_id": sub_id,
            "circuit": breaker.state,
            "since": records.iso(datetime.fromtimestamp(breaker.since, UTC)),
        }
        task = asyncio.create_task(self._send(sub_id, records.dumps(value)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, sub_id: str, value: bytes) -> None:
        try:
            await self.producer.send(self.topic, value, sub_id)
        except ProduceError as exc:
            log.warning("circuit state of %s not published: %s", sub_id, exc)
