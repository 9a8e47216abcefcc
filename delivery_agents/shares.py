"""Fair shares of an agent's delivery slots, so that slow endpoints cannot starve the rest.

Every subscription has a lane: its deliveries waiting for a slot, in arrival order. A free
slot goes to the lanes round-robin. A lane may have at most ``per_subscription`` deliveries in
flight while its endpoint answers promptly, and only :data:`SLOW_SHARE` while it is *new* (no
delivery finished yet: a slow start) or *slow* (its recent deliveries took :data:`SLOW_S` or
more on average, or one in flight has already run that long). Slow lanes also share one pool
of ``total // 4`` slots, so however many endpoints hang, three quarters of the slots stay with
the others. Deliveries waiting in a slow lane are counted apart (:meth:`Shares.slow_waiting`),
so that the agent keeps fetching the records of other subscriptions meanwhile. Deliveries of
an :data:`URGENT` context (retries that fell due) go to the head of their lane and their lane
to the head of the round.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from prometheus_client import Gauge

SLOW_S = 1.0  # a lane whose deliveries take this long (on average, or one so far) is slow
SLOW_SHARE = 2  # deliveries in flight for a new or slow lane
EWMA_WEIGHT = 0.3  # weight of the latest duration in a lane's average
# Set in a task's context: its deliveries wait at the head of their lane, and the lane at the
# head of the round (retries that fell due, before the backlog).
URGENT: ContextVar[bool] = ContextVar("urgent", default=False)
LANES_BUSY = Gauge(
    "webhookmaster_lanes_busy",
    "Subscriptions (lanes) with at least one delivery in flight in this agent.",
)


@dataclass(eq=False)
class Lane:
    """One subscription's deliveries: waiting (futures) and in flight (start times by token)."""

    waiters: deque[asyncio.Future[bool]] = field(default_factory=deque)
    running: OrderedDict[int, float] = field(default_factory=OrderedDict)
    active: int = 0  # slots granted (running, or granted and about to run)
    average_s: float | None = None
    queued: bool = False  # in Shares.runnable or Shares.parked

    def slow(self, now: float) -> bool:
        if self.average_s is not None and self.average_s >= SLOW_S:
            return True
        return bool(self.running) and now - next(iter(self.running.values())) >= SLOW_S

    def limit(self, now: float, per_subscription: int) -> int:
        if self.average_s is None or self.slow(now):
            return min(SLOW_SHARE, per_subscription)
        return per_subscription


class Shares:
    """Grants delivery slots: ``total`` in all, fairly between subscriptions (see module)."""

    def __init__(self, total: int, per_subscription: int) -> None:
        self.total = total
        self.per_subscription = per_subscription
        self.slow_cap = max(1, total // 4)
        self.in_flight = 0
        self.slow_in_flight = 0
        self.busy_lanes = 0  # lanes with a delivery in flight
        self.lanes: dict[str, Lane] = {}
        self.runnable: deque[Lane] = deque()  # lanes with waiters that may be able to start
        self.parked: deque[Lane] = deque()  # slow lanes with waiters, held by the slow pool
        self._tokens = 0

    def lane(self, key: str) -> Lane:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane()
        return lane

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of ``key``'s delivery slots for the body; the body's duration feeds the
        lane's average."""
        lane = self.lane(key)
        now = time.monotonic()
        slow = lane.slow(now)
        if (
            not lane.waiters
            and lane.active < lane.limit(now, self.per_subscription)
            and self.in_flight < self.total
            and not (slow and self.slow_in_flight >= self.slow_cap)
        ):
            pooled = slow
            self._start(lane, pooled)
        else:
            pooled = await self._wait(lane)
        token = self._tokens = self._tokens + 1
        started = time.monotonic()
        lane.running[token] = started
        try:
            yield
        finally:
            del lane.running[token]
            duration = time.monotonic() - started
            lane.average_s = (
                duration
                if lane.average_s is None
                else lane.average_s + EWMA_WEIGHT * (duration - lane.average_s)
            )
            self._release(lane, pooled)

    def slow_waiting(self) -> int:
        """Deliveries waiting for a slot of a lane that is slow now."""
        now = time.monotonic()
        return sum(
            len(lane.waiters) for lane in self.lanes.values() if lane.waiters and lane.slow(now)
        )

    async def _wait(self, lane: Lane) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if URGENT.get():
            lane.waiters.appendleft(future)
            if not lane.queued:
                lane.queued = True
                self.runnable.appendleft(lane)
            elif lane in self.runnable:  # not parked: to the head of the round
                self.runnable.remove(lane)
                self.runnable.appendleft(lane)
        else:
            lane.waiters.append(future)
            self._queue(lane)
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(lane, future.result())  # granted, then cancelled
            else:
                try:
                    lane.waiters.remove(future)
                except ValueError:
                    pass  # taken out by _pump
            raise

    def _queue(self, lane: Lane) -> None:
        if not lane.queued:
            lane.queued = True
            self.runnable.append(lane)

    def _start(self, lane: Lane, pooled: bool) -> None:
        if not lane.active:
            self.busy_lanes += 1
            LANES_BUSY.set(self.busy_lanes)
        lane.active += 1
        self.in_flight += 1
        if pooled:
            self.slow_in_flight += 1

    def _release(self, lane: Lane, pooled: bool) -> None:
        lane.active -= 1
        if not lane.active:
            self.busy_lanes -= 1
            LANES_BUSY.set(self.busy_lanes)
        self.in_flight -= 1
        if pooled:
            self.slow_in_flight -= 1
        if lane.waiters:
            self._queue(lane)
        self._pump()

    def _pump(self) -> None:
        """Grant free slots to waiting lanes, round-robin; parked lanes first while the slow
        pool has room (each one taken out is started, let go or parked again, so none is left
        parked while the pool is empty)."""
        now = time.monotonic()
        while self.in_flight < self.total:
            if self.parked and self.slow_in_flight < self.slow_cap:
                lane = self.parked.popleft()
            elif self.runnable:
                lane = self.runnable.popleft()
            else:
                break
            if not lane.waiters or lane.active >= lane.limit(now, self.per_subscription):
                lane.queued = False  # queued again when one of its slots is released
                continue
            pooled = lane.slow(now)
            if pooled and self.slow_in_flight >= self.slow_cap:
                self.parked.append(lane)
                continue
            future = lane.waiters.popleft()
            if future.done():  # cancelled, its task not yet told
                self.runnable.appendleft(lane)
                continue
            self._start(lane, pooled)
            future.set_result(pooled)
            if lane.waiters:
                self.runnable.append(lane)
            else:
                lane.queued = False
