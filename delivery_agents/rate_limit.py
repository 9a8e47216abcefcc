"""Per-subscription rate limit: deliveries to a subscription with a ``rate_limit`` wait for their
turn, paced ``1 / rate_limit`` seconds apart (a token bucket of one token, reservations in
arrival order).

It holds across any number of agent processes because every delivery of a subscription comes
from a record keyed by the subscription id on the ingest topic (the gateway's ingest and
fan-out, and fan-out records produced directly, which the agent first expands into
per-subscription records): all of them are on one partition, which one agent owns at a time, so
that agent's pacing is the subscription's. During a rebalance the old and the new owner may
overlap for the in-flight records (bounded by the revocation drain). Retries that fell due come
on the due topic, keyed the same, but in a consumer group of their own: with several agents,
another agent may own the subscription's due partition, and the two together may reach up to
twice the limit while both deliver it (docs/delivery.md, Rate limit).

A wait is not an attempt: it happens before the request, and nothing is published for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import Counter

WAITED = Counter(
    "webhookmaster_rate_limit_wait_seconds_total",
    "Seconds deliveries waited for their subscription's rate limit.",
)


class Pacer:
    """One subscription's pacing: the next free slot on the monotonic clock."""

    def __init__(self) -> None:
        self.next_at = 0.0

    def reserve(self, rate: float) -> float:
        """Reserve the next slot at ``rate`` per second; returns the seconds to wait for it."""
        now = time.monotonic()
        at = max(now, self.next_at)
        self.next_at = at + 1.0 / rate
        return at - now


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
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def turn(self, sub_id: str, rate: float | None) -> AsyncIterator[None]:
        """:meth:`wait` as a context (entered before the agent takes a delivery slot)."""
        await self.wait(sub_id, rate)
        yield
