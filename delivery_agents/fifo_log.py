"""The parked topic's events and the state they make, one partition at a time (pure: no Kafka).

A FIFO subscription's webhooks do not wait in the agent's memory: each one is written to the
``<prefix>parked`` topic, on the partition number of the ingest record it came from, as an
``enq`` event, and that ingest offset is then committed. The agent that owns the partition reads
the parked partition in order; the state of every ordering key (its queue, its head's progress)
is a function of the events read so far, so an agent that takes the partition over rebuilds it by
reading the partition again. Events (:mod:`schemas.parked`):

- ``enq``: a webhook joins its key's queue (value: the body; headers: the webhook's, the key,
  the ingest offset it came from); an ``enq`` whose ingest offset is not past the last one read
  is a redone ingest record (after a crash or a rebalance) and is ignored;
- ``att``: the head's attempt failed, its next attempt is due at ``due_ms`` (JSON value);
- ``end``: the head is finished (delivered, or FAILED with ``on_failure: skip``); the next webhook
  of its key becomes the head;
- ``halt``: the head ended FAILED and the subscription says ``on_failure: halt``: the key waits;
- ``skip`` / ``resume``: an operator's command (gateway, written to every partition): ``skip``
  ends the head it names, ``resume`` tries a halted head again from its first attempt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Queue:
    """One ordering key: its webhooks as (parked offset, webhook id, ingest offset), the head
    first, and the head's progress."""

    entries: deque[tuple[int, str, int]] = field(default_factory=deque)
    attempt: int = 0  # attempts the head made
    due_ms: int = 0  # when the head's next attempt is due (epoch ms; 0: now)
    halted: bool = False


@dataclass
class PartitionLog:
    """The state of one parked partition after the events applied so far, in offset order."""

    keys: dict[str, Queue] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)  # head webhook id -> key
    max_source: int = -1  # the last ingest offset enqueued
    next_offset: int = 0  # the offset after the last event applied

    def apply(self, offset: int, op: str, data: dict[str, Any]) -> str | None:
        """Apply the event at ``offset``; returns the key whose head must (re)start, if any.
        ``data``: the event's fields (for ``enq``: key, webhook_id, source)."""
        self.next_offset = max(self.next_offset, offset + 1)
        key = str(data.get("key", ""))
        webhook_id = str(data.get("webhook_id", ""))
        if op == "enq":
            return self._enqueue(offset, key, webhook_id, int(data["source"]))
        if op == "skip":
            found = self.heads.get(webhook_id)
            return self._end(found, webhook_id) if found is not None else None
        queue = self.keys.get(key)
        if queue is None or queue.entries[0][1] != webhook_id:
            if op == "resume":
                found = self.heads.get(webhook_id)
                queue = self.keys.get(found) if found is not None else None
                if queue is not None and queue.halted:
                    queue.halted, queue.attempt, queue.due_ms = False, 0, 0
                    return found
            return None  # about a webhook that is not (or no longer) the head: stale
        if op == "att":
            queue.attempt = int(data.get("attempt", queue.attempt))
            queue.due_ms = int(data.get("due_ms", 0))
        elif op == "halt":
            queue.halted = True
        elif op == "end":
            return self._end(key, webhook_id)
        return None

    def _enqueue(self, offset: int, key: str, webhook_id: str, source: int) -> str | None:
        if source <= self.max_source:
            return None  # an ingest record redone: enqueued already
        self.max_source = source
        queue = self.keys.setdefault(key, Queue())
        queue.entries.append((offset, webhook_id, source))
        if len(queue.entries) == 1:
            self.heads[webhook_id] = key
            return key
        return None

    def _end(self, key: str, webhook_id: str) -> str | None:
        queue = self.keys[key]
        queue.entries.popleft()
        self.heads.pop(webhook_id, None)
        queue.attempt, queue.due_ms, queue.halted = 0, 0, False
        if not queue.entries:
            del self.keys[key]
            return None
        self.heads[queue.entries[0][1]] = key
        return key

    def head(self, key: str) -> tuple[int, str] | None:
        queue = self.keys.get(key)
        return queue.entries[0][:2] if queue is not None else None

    def floor(self) -> tuple[int, int]:
        """Where a reader that takes this partition over must start (every event before it is
        about webhooks that are finished), and the last ingest offset enqueued before there
        (``enq`` events up to it that come after are redone records)."""
        heads = [queue.entries[0] for queue in self.keys.values()]
        if not heads:
            return self.next_offset, self.max_source
        offset, _, source = min(heads)
        return offset, source - 1

    def waiting(self) -> int:
        """Webhooks queued behind a head."""
        return sum(len(queue.entries) - 1 for queue in self.keys.values())
