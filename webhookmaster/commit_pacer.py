"""When the consumer bridge commits offsets, and which: coalesced asynchronous commits.

A commit before every fetch (hundreds a second under a saturated agent) queues
OffsetCommitRequests on the group coordinator's connection faster than the broker answers them
(it serves one request of a connection at a time); the group heartbeat, sent on the same
connection, waits behind them until it times out and the member is fenced (``UNKNOWN_MEMBER_ID``,
its uncommitted work redone). :class:`CommitPacer` keeps that queue at most one commit deep:

- at most one asynchronous commit in flight (until its result comes back, or ``timeout_s``);
- at most one every ``interval_s``;
- only the partitions whose committable offset advanced beyond what the broker acknowledged
  or what is in flight; a failed commit's offsets are offered again with the next one.

Pure bookkeeping, no client calls and no clock of its own (``now`` is passed in): the bridge
calls it on its consumer thread; a lock makes it safe anyway.
"""

from __future__ import annotations

import threading

from webhookmaster.offsets import Partition


class CommitPacer:
    def __init__(self, interval_s: float, timeout_s: float) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s  # an in-flight commit with no result by then is given up
        self._waiting: dict[Partition, int] = {}  # advanced, not sent yet (or sent and failed)
        self._in_flight: dict[Partition, int] | None = None
        self._acked: dict[Partition, int] = {}  # the broker confirmed these
        self._sent_at = float("-inf")
        self._lock = threading.Lock()
        self.sent = 0  # asynchronous commits handed out
        self.failed = 0  # of which failed

    def offer(self, committable: dict[Partition, int]) -> None:
        """Offsets that became committable (e.g. :meth:`OffsetTracker.committable`)."""
        with self._lock:
            for tp, offset in committable.items():
                if offset > self._acked.get(tp, -1):
                    self._waiting[tp] = max(offset, self._waiting.get(tp, -1))

    def take(self, now: float, assigned: set[Partition] | None = None) -> dict[Partition, int]:
        """The offsets to commit asynchronously now, or nothing: not while a commit is in
        flight (unless it is older than ``timeout_s``) nor within ``interval_s`` of the last
        one. Only partitions in ``assigned`` (when given) are committed; the others are
        dropped. Taken offsets are in flight until :meth:`settled`."""
        with self._lock:
            if self._in_flight is not None and now - self._sent_at < self.timeout_s:
                return {}
            if now - self._sent_at < self.interval_s:
                return {}
            if self._in_flight is not None:  # no answer in time: offer its offsets again
                self._restore(self._in_flight)
                self._in_flight = None
            offsets = self._drain(assigned)
            if offsets:
                self._in_flight = offsets
                self._sent_at = now
                self.sent += 1
            return dict(offsets)

    def take_all(self, assigned: set[Partition] | None = None) -> dict[Partition, int]:
        """Every offset waiting or in flight, for a synchronous commit now (revocation, an
        explicit commit, close); report its outcome with :meth:`settled`."""
        with self._lock:
            if self._in_flight is not None:
                self._restore(self._in_flight)
                self._in_flight = None
            return dict(self._drain(assigned))

    def settled(self, offsets: dict[Partition, int], failed: dict[Partition, int]) -> None:
        """A commit's outcome: ``offsets`` acknowledged, ``failed`` not (offered again)."""
        with self._lock:
            if self._in_flight is not None and self._in_flight == {**offsets, **failed}:
                self._in_flight = None  # (a late answer to an older commit leaves it be)
            for tp, offset in offsets.items():
                self._acked[tp] = max(offset, self._acked.get(tp, -1))
                if self._waiting.get(tp, -1) <= offset:
                    self._waiting.pop(tp, None)
            if failed:
                self.failed += 1
                self._restore(failed)

    def in_flight(self) -> bool:
        with self._lock:
            return self._in_flight is not None

    def waiting(self) -> dict[Partition, int]:
        with self._lock:
            return dict(self._waiting)

    def forget(self, tp: Partition) -> None:
        """A partition left this consumer: nothing of it is committed here any more."""
        with self._lock:
            self._waiting.pop(tp, None)
            self._acked.pop(tp, None)
            if self._in_flight is not None:
                self._in_flight.pop(tp, None)

    def reset(self) -> None:
        """A new consumer (the old one replaced): forget everything."""
        with self._lock:
            self._waiting.clear()
            self._acked.clear()
            self._in_flight = None
            self._sent_at = float("-inf")

    def _restore(self, offsets: dict[Partition, int]) -> None:
        for tp, offset in offsets.items():
            if offset > self._acked.get(tp, -1) and offset > self._waiting.get(tp, -1):
                self._waiting[tp] = offset

    def _drain(self, assigned: set[Partition] | None) -> dict[Partition, int]:
        offsets = {
            tp: off for tp, off in self._waiting.items() if assigned is None or tp in assigned
        }
        self._waiting.clear()
        return offsets
