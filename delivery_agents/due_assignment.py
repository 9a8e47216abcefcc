"""The due topic's partitions follow the ingest topic's: an agent reads exactly the due
partitions whose numbers match the ingest partitions the agents' group gave it.

Retries that fell due come back on ``<prefix>due``, which has as many partitions as the ingest
topic and whose records are keyed by the subscription id with the same partitioner (murmur2,
:func:`webhookmaster.kafka_clients.producer_config`): a subscription's retries are on the due
partition with the number of its ingest partition. The due consumer never subscribes to a group;
the ingest consumer's rebalance callbacks assign and unassign its partitions, and its group id
only stores its committed offsets. So one process owns a subscription on both paths, and with
it the subscription's rate limit and circuit breaker.

On revocation the ingest and the due work of the revoked partitions finish (bounded), the due
offsets are committed and the due partitions released, and only then does the group hand the
ingest partitions (and so the due ones) to their next owner. Afterwards the subscriptions seen
on those partitions are forgotten (``on_released``): a later owner restores their breaker from
the circuits topic rather than keep a stale one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from prometheus_client import Gauge

from webhookmaster.consumer_thread import ConsumerThread
from webhookmaster.offsets import Partition

log = logging.getLogger(__name__)

DUE_ASSIGNED = Gauge(
    "webhookmaster_due_assigned_partitions",
    "Due topic partitions this agent reads (those matching its ingest partitions).",
)
DUE_LAG = Gauge(
    "webhookmaster_due_lag_records",
    "Records on this agent's due partitions beyond its position (high watermark - position).",
)


class DueMirror:
    """Mirrors the ingest consumer's assignment onto the due consumer (see the module)."""

    def __init__(
        self,
        due: ConsumerThread,
        due_topic: str,
        drain_s: float,
        on_released: Callable[[list[str]], None] | None = None,
    ) -> None:
        """``drain_s``: longest wait for the revoked partitions' work in hand;
        ``on_released(subscription ids)``: called (on the ingest consumer's thread) with the
        subscriptions seen on partitions once these are released."""
        self.due = due
        self.due_topic = due_topic
        self.drain_s = drain_s
        self.on_released = on_released
        self.ingest: ConsumerThread | None = None
        self._owners: dict[str, int] = {}  # subscription id -> partition number it came from
        self._lock = threading.Lock()

    def attach(self, ingest: ConsumerThread) -> None:
        """The ingest consumer whose assignment is mirrored (its work is drained on revoke)."""
        self.ingest = ingest

    def _due(self, tps: list[Partition]) -> list[Partition]:
        return sorted((self.due_topic, p) for _t, p in tps)

    def assigned(self, tps: list[Partition]) -> None:
        """Ingest consumer's ``on_assign`` (its thread): read the matching due partitions."""
        if not tps:
            return
        try:
            self.due.run_sync(self.due.assign, self._due(tps))
        except KafkaException as exc:  # seen by the gauge and its alert
            log.error("could not assign the due partitions of %s: %s", tps, exc)
        DUE_ASSIGNED.set(len(self.due.assigned))

    def revoked(self, tps: list[Partition]) -> None:
        """Ingest consumer's ``on_revoke`` (its thread): let the ingest and due work of the
        partitions finish (bounded), commit and release the due partitions."""
        if not tps:
            return
        due_tps = self._due(tps)
        deadline = time.monotonic() + self.drain_s
        while self._in_flight(tps, due_tps):
            if time.monotonic() > deadline:
                log.warning("revoking %s with work still in flight; it will be redone", tps)
                break
            time.sleep(0.01)
        try:
            self.due.run_sync(self.due.unassign, due_tps)
        except KafkaException as exc:
            log.error("could not unassign the due partitions %s: %s", due_tps, exc)
        DUE_ASSIGNED.set(len(self.due.assigned))
        numbers = {p for _t, p in tps}
        with self._lock:
            subs = [s for s, p in self._owners.items() if p in numbers]
            for sub_id in subs:
                del self._owners[sub_id]
        if self.on_released is not None and subs:
            self.on_released(subs)

    def _in_flight(self, tps: list[Partition], due_tps: list[Partition]) -> bool:
        ingest = self.ingest
        if ingest is not None and any(ingest.tracker.in_flight(tp) for tp in tps):
            return True
        return any(self.due.tracker.in_flight(tp) for tp in due_tps)

    def note(self, sub_id: str, partition: int) -> None:
        """A record of ``sub_id`` came from ``partition`` (ingest or due: the same number)."""
        with self._lock:
            self._owners[sub_id] = partition

    def measure_lag(self) -> None:
        """Set the due lag gauge (on the due consumer's thread)."""
        try:
            lag = self.due.lag()
        except KafkaException as exc:  # unassigned meanwhile, broker away: measured next time
            log.debug("due lag: %s", exc)
            return
        DUE_LAG.set(sum(lag.values()))
