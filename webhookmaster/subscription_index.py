"""Indexes over the subscription table, so that no read looks at every subscription.

The table keeps each subscription as one ``bytes`` entry (:mod:`webhookmaster.subscription_table`)
that starts with ``created_at``, NUL, ``id``, NUL: entries sort in list order as plain bytes
(UTF-8 keeps code point order), and the indexes hold those same objects, no copies.

- by event type: the entries of the *active* subscriptions that name it, plus the wildcard set
  (active subscriptions with no event types, which accept everything); fan-out matching reads
  only these.
- by list order: every entry in a sorted list that pages from a cursor position by bisection
  (keyset pagination, no sort per request).

Not thread-safe on its own: :class:`webhookmaster.subscription_table.SubscriptionTable` updates
and reads it under its lock, on every change of an entry (create, update, delete, tombstone).
"""

from __future__ import annotations

from sortedcontainers import SortedList


def position(created_at: str, sub_id: str) -> bytes:
    """The prefix of the entry of the subscription at (``created_at``, ``sub_id``)."""
    return b"%s\0%s\0" % (created_at.encode(), sub_id.encode())


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_type: dict[str, set[bytes]] = {}
        self._wildcard: set[bytes] = set()
        self._order = SortedList()  # every entry

    def __len__(self) -> int:
        return len(self._order)

    def add(self, entry: bytes, event_types: tuple[str, ...], is_active: bool) -> None:
        self._order.add(entry)
        if not is_active:
            return
        if not event_types:
            self._wildcard.add(entry)
        for event_type in event_types:
            self._by_type.setdefault(event_type, set()).add(entry)

    def remove(self, entry: bytes, event_types: tuple[str, ...]) -> None:
        """Forget ``entry``, added with these ``event_types``."""
        self._order.discard(entry)
        self._wildcard.discard(entry)
        for event_type in event_types:
            entries = self._by_type.get(event_type)
            if entries is not None:
                entries.discard(entry)
                if not entries:
                    del self._by_type[event_type]

    def matching(self, event_type: str) -> set[bytes]:
        """Entries of the active subscriptions whose filter accepts ``event_type``."""
        named = self._by_type.get(event_type)
        return self._wildcard | named if named else set(self._wildcard)

    def page(self, after: tuple[str, str] | None, limit: int) -> tuple[list[bytes], bool]:
        """The first ``limit`` entries after position ``after`` (created_at, id) in list order,
        and whether more follow."""
        # \1 in place of the NUL that ends the id: after the entry at ``after`` itself and
        # before the next one (ids hold no control characters)
        start = 0 if after is None else self._order.bisect_left(position(*after)[:-1] + b"\1")
        keys = list(self._order.islice(start, start + limit + 1))
        return keys[:limit], len(keys) > limit
