"""Indexes over the subscription table, so that no read looks at every subscription.

- by event type: the ids of the *active* subscriptions that name it, plus the wildcard set (active
  subscriptions with no event types, which accept everything); fan-out matching reads only these.
- by list order: the ``(created_at, id)`` positions of every subscription, in a sorted list that
  pages from a cursor position by bisection (keyset pagination, no sort per request).

Not thread-safe on its own: :class:`webhookmaster.subscription_table.SubscriptionTable` updates
and reads it under its lock, on every change of an entry (create, update, delete, tombstone).
"""

from __future__ import annotations

from typing import Protocol

import msgspec
from sortedcontainers import SortedList


class _Position(msgspec.Struct, frozen=True, order=True, gc=False):
    """A place in list order; compares as the tuple (created_at, id), in half a tuple's size."""

    created_at: str
    id: str


class Indexed(Protocol):
    """What the index reads of a subscription."""

    @property
    def id(self) -> str: ...
    @property
    def event_types(self) -> tuple[str, ...]: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def created_at(self) -> str: ...


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_type: dict[str, set[str]] = {}
        self._wildcard: set[str] = set()
        self._order = SortedList()  # the _Position of every subscription

    def __len__(self) -> int:
        return len(self._order)

    def add(self, sub: Indexed) -> None:
        self._order.add(_Position(sub.created_at, sub.id))
        if not sub.is_active:
            return
        if not sub.event_types:
            self._wildcard.add(sub.id)
        for event_type in sub.event_types:
            self._by_type.setdefault(event_type, set()).add(sub.id)

    def remove(self, sub: Indexed) -> None:
        """Forget ``sub`` as it was added (the same field values)."""
        self._order.discard(_Position(sub.created_at, sub.id))
        self._wildcard.discard(sub.id)
        for event_type in sub.event_types:
            ids = self._by_type.get(event_type)
            if ids is not None:
                ids.discard(sub.id)
                if not ids:
                    del self._by_type[event_type]

    def matching(self, event_type: str) -> set[str]:
        """Ids of the active subscriptions whose filter accepts ``event_type``."""
        named = self._by_type.get(event_type)
        return self._wildcard | named if named else set(self._wildcard)

    def page(self, after: tuple[str, str] | None, limit: int) -> tuple[list[str], bool]:
        """Ids of the first ``limit`` subscriptions after position ``after`` in (created_at, id)
        order, and whether more follow."""
        start = 0 if after is None else self._order.bisect_right(_Position(*after))
        keys = list(self._order.islice(start, start + limit + 1))
        return [key.id for key in keys[:limit]], len(keys) > limit
