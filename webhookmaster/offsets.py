"""Commit logic: which offset of each partition may be committed.

Records of a partition may complete out of order; only the contiguous prefix of completed
records is committable. :class:`OffsetTracker` is fed every offset handed to processing
(:meth:`started`) and every offset whose outcome is durable (:meth:`done`); :meth:`committable`
returns, per partition, the offset to commit (the first one not yet done) when it moved.
Thread-safe: completions arrive on the event loop, revocations on the consumer's thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

Partition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[Partition, OrderedDict[int, bool]] = {}
        self._next: dict[Partition, int] = {}  # first offset not yet done, per partition
        self._committed: dict[Partition, int] = {}
        self._lock = threading.Lock()

    def started(self, tp: Partition, offset: int) -> None:
        with self._lock:
            self._pending.setdefault(tp, OrderedDict())[offset] = False

    def done(self, tp: Partition, offset: int) -> None:
        with self._lock:
            pending = self._pending.get(tp)
            if pending is None or offset not in pending:
                return  # partition revoked meanwhile: its new owner will redo the record
            pending[offset] = True
            while pending:
                first, finished = next(iter(pending.items()))
                if not finished:
                    break
                pending.popitem(last=False)
                self._next[tp] = first + 1

    def in_flight(self, tp: Partition) -> int:
        with self._lock:
            return sum(1 for finished in self._pending.get(tp, {}).values() if not finished)

    def committable(self) -> dict[Partition, int]:
        """Partitions whose committable offset moved since the last call, with that offset."""
        with self._lock:
            moved = {tp: off for tp, off in self._next.items() if self._committed.get(tp) != off}
            self._committed.update(moved)
            return moved

    def forget(self, tp: Partition) -> None:
        """Drop a revoked partition: later completions for it are not committed here."""
        with self._lock:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
