"""Per-subscription rate limit: deliveries to a subscription with a ``rate_limit`` wait for their
turn, paced ``1 / rate_limit`` seconds apart (a token bucket of one token, reservations in
arrival order).

It holds across any number of agent processes because every delivery of a subscription comes
from a record keyed by the subscription id: on the ingest topic (the gateway's ingest and
fan-out, and fan-out records produced directly, which the agent first expands into
per-subscription records) or, for retries that fell due, on the due topic, which is
co-partitioned with it. One agent owns the ingest partition and reads the due partition of the
same number (:mod:`delivery_agents.due_assignment`), so that agent's pacing is the
subscription's. During a rebalance the old and the new owner may overlap for the in-flight
records (bounded by the revocation drain).

A wait is not an attempt: it happens before the request, and nothing is published for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import Counter, Gauge

WAITED = Counter(
    "webhookmaster_rate_limit_wait_seconds_total",
    "Seconds deliveries waited for their subscription's rate limit.",
)
WAITING = Gauge(
    "webhookmaster_rate_limit_waiting",
    "Deliveries waiting now for their subscription's rate limit (no slot held).",
)


# Two requests of a subscription start at least this share of 1 / rate_limit apart, whatever
# happened between their turn and their request.
SPACING = 0.95


class Pacer:
    """One subscription's pacing: the next free slot on the monotonic clock."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self.started_at = -1e9  # when the last request started (or will start)

    def reserve(self, rate: float) -> float:
        """Reserve the next slot at ``rate`` per second; returns the seconds to wait for it."""
        now = time.monotonic()
        at = max(now, self.next_at)
        self.next_at = at + 1.0 / rate
        return at - now

    def space(self, rate: float, waited: bool) -> float:
        """Start a request now when the previous one started at least :data:`SPACING` /
        ``rate`` ago (0 returned, the start recorded; after a wait (``waited``), later turns
        move behind it); otherwise the seconds to wait before asking again. The slack keeps
        timer jitter from ever making a request wait."""
        now = time.monotonic()
        at = self.started_at + SPACING / rate
        if at > now:
            return at - now
        self.started_at = now
        if waited:
            self.next_at = max(self.next_at, now + 1.0 / rate)
        return 0.0


class RateLimits:
    """The pacers of the subscriptions this agent delivers."""

    def __init__(self) -> None:
        self.pacers: dict[str, Pacer] = {}

    async def wait(self, sub_id: str, rate: float | None) -> None:
        """Return when a delivery to ``sub_id`` may start under ``rate`` (None: at once)."""
        if rate is None:
            self.pacers.pop(sub_id, None)
            return
        pacer = self.pacers.get(sub_id)
        if pacer is None:
            pacer = self.pacers[sub_id] = Pacer()
        delay = pacer.reserve(rate)
        if delay > 0:
            WAITED.inc(delay)
            WAITING.inc()
            try:
                await asyncio.sleep(delay)
            finally:
                WAITING.dec()

    def forget(self, sub_ids: list[str]) -> None:
        """Drop the pacers of subscriptions this agent no longer delivers."""
        for sub_id in sub_ids:
            self.pacers.pop(sub_id, None)

    async def spaced(self, sub_id: str, rate: float | None) -> None:
        """In the delivery slot, just before the request: keep :data:`SPACING` / ``rate``
        between two requests' starts, measured when they start (so neither deliveries that
        had their turns and then waited together in their lane, nor ones that a stalled event
        loop wakes together, go at once)."""
        pacer = self.pacers.get(sub_id)
        if rate is None or pacer is None:
            return
        waited = False
        while (delay := pacer.space(rate, waited)) > 0:
            waited = True
            WAITED.inc(delay)
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def turn(self, sub_id: str, rate: float | None) -> AsyncIterator[None]:
        """:meth:`wait` as a context (entered before the agent takes a delivery slot)."""
        await self.wait(sub_id, rate)
        yield
