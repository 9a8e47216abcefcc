"""Indexes over the subscription table, so that no read looks at every subscription.

The table keeps each subscription as one ``bytes`` entry (:mod:`webhookmaster.subscription_table`)
that starts with ``created_at``, NUL, ``id``, NUL: entries sort in list order as plain bytes
(UTF-8 keeps code point order), and the indexes hold those same objects, no copies.

- by event type: the entries of the *active* subscriptions that name it, plus the wildcard ones
  (active subscriptions with no event types, which accept everything), each in list order;
  fan-out matching merges only these. A few entries sit in a plain sorted list (~9 bytes each,
  where a set took ~84), more in a :class:`SortedList` (insertion and removal stay O(log n)).
- by list order: every entry in a sorted list that pages from a cursor position by bisection
  (keyset pagination, no sort per request).

Not thread-safe on its own: :class:`webhookmaster.subscription_table.SubscriptionTable` updates
and reads it under its lock, on every change of an entry (create, update, delete, tombstone).
"""

from __future__ import annotations

import bisect
import heapq
from typing import TypeAlias

from sortedcontainers import SortedList

SMALL = 256  # entries of an event type kept in a plain list; more go into a SortedList
_Bucket: TypeAlias = list[bytes] | SortedList


def position(created_at: str, sub_id: str) -> bytes:
    """The prefix of the entry of the subscription at (``created_at``, ``sub_id``)."""
    return b"%s\0%s\0" % (created_at.encode(), sub_id.encode())


def _add(bucket: _Bucket, entry: bytes) -> _Bucket:
    """``bucket`` with ``entry`` added: the same object, or a SortedList once it grows."""
    if isinstance(bucket, SortedList):
        bucket.add(entry)
        return bucket
    bisect.insort(bucket, entry)
    return SortedList(bucket) if len(bucket) > SMALL else bucket


def _discard(bucket: _Bucket, entry: bytes) -> None:
    if isinstance(bucket, SortedList):
        bucket.discard(entry)
        return
    at = bisect.bisect_left(bucket, entry)
    if at < len(bucket) and bucket[at] == entry:
        del bucket[at]


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_type: dict[str, _Bucket] = {}
        self._wildcard: _Bucket = []
        self._order = SortedList()  # every entry

    def __len__(self) -> int:
        return len(self._order)

    def add(self, entry: bytes, event_types: tuple[str, ...], is_active: bool) -> None:
        self._order.add(entry)
        if not is_active:
            return
        if not event_types:
            self._wildcard = _add(self._wildcard, entry)
        for event_type in event_types:
            self._by_type[event_type] = _add(self._by_type.get(event_type, []), entry)

    def remove(self, entry: bytes, event_types: tuple[str, ...]) -> None:
        """Forget ``entry``, added with these ``event_types``."""
        self._order.discard(entry)
        _discard(self._wildcard, entry)
        for event_type in event_types:
            bucket = self._by_type.get(event_type)
            if bucket is not None:
                _discard(bucket, entry)
                if not bucket:
                    del self._by_type[event_type]

    def matching(self, event_type: str) -> list[bytes]:
        """Entries of the active subscriptions whose filter accepts ``event_type``, in list
        order."""
        named = self._by_type.get(event_type)
        if not named:
            return list(self._wildcard)
        if not self._wildcard:
            return list(named)
        return list(heapq.merge(self._wildcard, named))

    def page(self, after: tuple[str, str] | None, limit: int) -> tuple[list[bytes], bool]:
        """The first ``limit`` entries after position ``after`` (created_at, id) in list order,
        and whether more follow."""
        # \1 in place of the NUL that ends the id: after the entry at ``after`` itself and
        # before the next one (ids hold no control characters)
        start = 0 if after is None else self._order.bisect_left(position(*after)[:-1] + b"\1")
        keys = list(self._order.islice(start, start + limit + 1))
        return keys[:limit], len(keys) > limit
