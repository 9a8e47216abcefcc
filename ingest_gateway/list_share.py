"""Ingest before listing: while webhooks are being ingested, subscription list pages may take at
most ``WM_LIST_SHARE`` of the gateway's event loop.

A list page of 50 costs about as much of the loop as two ingest requests, and a page is built
without awaiting anything: a few clients walking the list as fast as they can would otherwise
take most of the loop from ingest (four cut a lone gateway's ingest to 0.37 to 0.41 of its rate in
the bench). Each page's build and write time is charged to a bucket that refills at ``share``
seconds per second (at most ``burst_s`` ahead); while ingest has been seen within
:data:`BUSY_S`, a page whose bucket is empty waits until it refills, pages one at a time. With no
ingest traffic, pages are not held back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Counter

BURST_S = 0.02  # loop seconds of pages that may go at once
BUSY_S = 0.25  # ingest seen this recently: the gateway is busy ingesting
MIN_WAIT_S = 0.001

HELD = Counter(
    "webhookmaster_gateway_list_pages_held",
    "Subscription list pages that waited because ingest was busy and lists had used their "
    "share of the event loop (WM_LIST_SHARE).",
)


class ListShare:
    """The list pages' budget of event-loop time while ingest is busy."""

    def __init__(
        self, share: float, clock: Callable[[], float] = time.monotonic, burst_s: float = BURST_S
    ) -> None:
        self.share = share
        self.clock = clock
        self.burst_s = burst_s
        self.tokens = burst_s
        self.updated = clock()
        self.last_ingest = float("-inf")
        self._turns = asyncio.Lock()

    def ingest_seen(self) -> None:
        """An ingest request arrived."""
        self.last_ingest = self.clock()

    def busy(self) -> bool:
        return self.clock() - self.last_ingest < BUSY_S

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst_s, self.tokens + (now - self.updated) * self.share)
        self.updated = now

    async def turn(self) -> None:
        """Wait until a page may be built (at once unless ingest is busy and the share is
        spent); waiting pages go one at a time, in arrival order."""
        if not self.busy() and not self._turns.locked():
            return
        async with self._turns:
            held = False
            while True:
                self._refill()
                if self.tokens >= 0 or not self.busy():
                    return
                if not held:
                    HELD.inc()
                    held = True
                await asyncio.sleep(max(-self.tokens / self.share, MIN_WAIT_S))

    def spent(self, seconds: float) -> None:
        """Charge a page's build and write time (only while ingest is busy: an idle gateway's
        pages leave no debt)."""
        self._refill()
        if self.busy():
            self.tokens -= seconds
