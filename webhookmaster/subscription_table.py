"""The subscription table: an in-memory view of the compacted subscriptions topic.

It reads the topic from the beginning to its end before :meth:`wait_loaded` returns, then keeps
following it in a thread. Writers apply their own acknowledged records at once
(:meth:`apply`), which gives read-your-writes on that replica; each entry remembers the offset it
came from, so a late older record never overwrites a newer one.

Secrets are stored encrypted (``secret_key_encrypted``, :mod:`webhookmaster.secret_box`) and
decrypted as records are loaded, so a :class:`Subscription` holds its secret in plain text in
memory only. A record no configured key opens is logged, counted and skipped like any unreadable
record. Records still in plain text (``secret_key``) or under an older key are read and listed
by :meth:`SubscriptionTable.stale`, for the gateway to rewrite.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter

from schemas import records
from schemas.topics import CIRCUITS, SUBSCRIPTIONS
from webhookmaster import secret_box
from webhookmaster.kafka_clients import consumer_config, record_offset, record_tp
from webhookmaster.secret_box import SecretBox
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

# Errors a freshly created topic answers until its partition has a leader.
_TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    }
)

SKIPPED = Counter(
    "webhookmaster_subscription_records_skipped_total",
    "Subscription records the table could not use, by reason (unreadable: not a "
    "valid record; undecryptable: no configured secret key opens its secret).",
    ["reason"],
)


@dataclass(frozen=True)
class Subscription:
    id: str
    target_url: str
    secret_key: str = field(repr=False)  # plain text, in memory only: never in a log line
    event_types: tuple[str, ...]
    is_active: bool
    created_at: str
    updated_at: str
    rate_limit: float | None = None  # deliveries per second; None: no limit
    disabled_reason: str | None = None  # set when an agent disabled it (auto-disable)
    disabled_at: str | None = None

    @classmethod
    def from_stored(cls, data: dict[str, Any], box: SecretBox) -> tuple[Subscription, bool]:
        """The subscription a topic record holds, its secret decrypted, and whether the record
        is current (secret encrypted under the newest key, no plain-text copy). Raises
        :class:`secret_box.InvalidToken` when no key opens the secret."""
        token = data.get("secret_key_encrypted")
        if token is None:  # written before secrets were encrypted
            secret, current = data.get("secret_key") or "", False
        elif not isinstance(token, str):
            raise TypeError("secret_key_encrypted must be a string")
        else:
            secret, current = box.decrypt(token)
            current = current and "secret_key" not in data
        sub = cls(
            id=data["id"],
            target_url=data["target_url"],
            secret_key=secret,
            event_types=tuple(data.get("event_types") or ()),
            is_active=bool(data.get("is_active", True)),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            rate_limit=data.get("rate_limit"),
            disabled_reason=data.get("disabled_reason"),
            disabled_at=data.get("disabled_at"),
        )
        return sub, current

    def to_stored(self, box: SecretBox) -> dict[str, Any]:
        """The topic record (the JSON object of :class:`schemas.records.SubscriptionRecord`):
        the secret encrypted under the newest key, never in plain text."""
        return {
            "id": self.id,
            "target_url": self.target_url,
            "secret_key_encrypted": box.encrypt(self.secret_key),
            "event_types": list(self.event_types),
            "is_active": self.is_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "rate_limit": self.rate_limit,
            "disabled_reason": self.disabled_reason,
            "disabled_at": self.disabled_at,
        }

    def to_record(self) -> dict[str, object]:
        """The API's view, secret in plain text (never written to the topic as such)."""
        return {
            "id": self.id,
            "target_url": self.target_url,
            "secret_key": self.secret_key,
            "event_types": list(self.event_types),
            "is_active": self.is_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "rate_limit": self.rate_limit,
            "disabled_reason": self.disabled_reason,
            "disabled_at": self.disabled_at,
        }

    def accepts(self, event_type: str) -> bool:
        """True when ``event_type`` passes this subscription's filter (empty: everything)."""
        return not self.event_types or event_type in self.event_types


class SubscriptionTable:
    """Follows the subscriptions topic; thread-safe reads of the latest state by id."""

    def __init__(self, settings: Settings, box: SecretBox | None = None) -> None:
        # First, so that a process without a usable key stops before it connects anywhere.
        self.box = box if box is not None else secret_box.from_settings(settings)
        self.topic = settings.topic(SUBSCRIPTIONS)
        self.circuits_topic = settings.topic(CIRCUITS)
        # Circuit breaker state by subscription id (the circuits topic): (state, since).
        self._circuits: dict[str, tuple[str, str]] = {}
        self._entries: dict[str, tuple[int, Subscription | None]] = {}
        # Entries read from records to rewrite (plain text, older key): id -> offset.
        self._stale: dict[str, int] = {}
        # Records read after a newer write of this process's own: id -> (offset, state).
        self._passed: dict[str, tuple[int, Subscription | None]] = {}
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._end: dict[tuple[str, int], int] = {}
        # Next offset the follower will read, per (topic, partition), and a condition on it.
        self._position: dict[tuple[str, int], int] = {}
        self._progress = threading.Condition()
        # It assigns partitions itself and never joins its group: no protocol to ask. A second
        # client of the same config asks the topic's end: the follower's own one is busy polling.
        self._config = consumer_config(
            settings,
            f"wm-table-{uuid.uuid4().hex}",
            **{"enable.partition.eof": True, "group.protocol": "classic"},
        )
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()
        self._consumer = Consumer(self._config)
        self._partitions: list[int] = []
        self._thread = threading.Thread(target=self._follow, name="subscription-table", daemon=True)

    def start(self) -> None:
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        if metadata.error is not None:
            raise RuntimeError(f"subscriptions topic {self.topic}: {metadata.error.str()}")
        parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        circuits = self._consumer.list_topics(self.circuits_topic, timeout=30).topics[
            self.circuits_topic
        ]
        if circuits.error is None:
            parts += [
                TopicPartition(self.circuits_topic, p, OFFSET_BEGINNING)
                for p in circuits.partitions
            ]
        else:  # an older deployment: the table works, circuits show as closed
            log.warning("circuits topic %s: %s", self.circuits_topic, circuits.error.str())
        self._partitions = sorted(metadata.partitions)
        deadline = time.monotonic() + 30
        for tp in parts:
            low, high = self._watermarks(tp, deadline)
            if high > low:
                self._end[(tp.topic, tp.partition)] = high
        self._consumer.assign(parts)
        if not self._end:
            self._loaded.set()
        self._thread.start()

    def _watermarks(
        self, tp: TopicPartition, deadline: float, client: Consumer | None = None
    ) -> tuple[int, int]:
        """Low and high watermark; retried while the partition has no leader yet."""
        while True:
            try:
                return (client or self._consumer).get_watermark_offsets(
                    tp, timeout=max(1.0, deadline - time.monotonic())
                )
            except KafkaException as exc:
                if exc.args[0].code() not in _TRANSIENT or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def wait_loaded(self, timeout: float) -> bool:
        """Block until the table holds everything the topic held at start."""
        return self._loaded.wait(timeout)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def _follow(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._mark_progress(record_tp(msg), record_offset(msg))
                else:
                    log.warning("subscriptions topic: %s", err.str())
                continue
            offset = record_offset(msg)
            if msg.topic() == self.circuits_topic:
                self._apply_circuit(msg.key(), msg.value(), offset)
            else:
                self._apply_message(msg.key(), msg.value(), offset)
            self._mark_progress(record_tp(msg), offset + 1)
        self._consumer.close()

    def wait_caught_up(self, timeout: float) -> bool:
        """Block until the table holds every subscription record written before this call
        (read-your-writes for a process that meets an id the table does not know yet: a
        webhook ingested right after its subscription was created). False after ``timeout``
        or when the topic's end cannot be asked."""
        deadline = time.monotonic() + timeout
        try:
            with self._probe_lock:
                if self._stop.is_set():
                    return False
                if self._probe is None:
                    self._probe = Consumer(self._config)
                ends = {
                    partition: self._watermarks(
                        TopicPartition(self.topic, partition), deadline, self._probe
                    )[1]
                    for partition in self._partitions
                }
        except KafkaException as exc:
            log.warning("subscriptions topic: cannot ask its end: %s", exc)
            return False
        with self._progress:
            return self._progress.wait_for(
                lambda: all(
                    self._position.get((self.topic, p), 0) >= end for p, end in ends.items()
                ),
                max(0.0, deadline - time.monotonic()),
            )

    def _mark_progress(self, partition: tuple[str, int], next_offset: int) -> None:
        with self._progress:
            self._position[partition] = max(self._position.get(partition, 0), next_offset)
            self._progress.notify_all()
        if partition in self._end and next_offset >= self._end[partition]:
            del self._end[partition]
            if not self._end:
                self._loaded.set()

    def _apply_circuit(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """A circuits record: ``{"subscription_id", "circuit", "since"}`` (null: forget)."""
        if key is None:
            return
        sub_id = key.decode(errors="replace")
        if value is None:
            self._circuits.pop(sub_id, None)
            return
        try:
            data = orjson.loads(value)
            state, since = data["circuit"], data["since"]
            if state not in ("closed", "open", "half_open") or not isinstance(since, str):
                raise ValueError(f"bad circuit state {state!r}")
        except (ValueError, KeyError, TypeError) as exc:
            SKIPPED.labels("unreadable").inc()
            log.warning("skipping unreadable circuits record at offset %d: %s", offset, exc)
            return
        self._circuits[sub_id] = (state, since)

    def circuit(self, sub_id: str) -> dict[str, str | None]:
        """The subscription's circuit breaker as its owning agent last published it
        (``closed`` since null when it never left that state)."""
        state, since = self._circuits.get(sub_id, ("closed", None))
        return {"state": state, "since": since}

    def _apply_message(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None:
            return
        sub_id = key.decode(errors="replace")
        try:
            sub, current = (
                (None, True)
                if value is None
                else Subscription.from_stored(records.parse_subscription(value), self.box)
            )
        except secret_box.InvalidToken:
            SKIPPED.labels("undecryptable").inc()
            log.error(
                "skipping subscription record %s at offset %d: no configured secret key "
                "(WM_SECRET_KEYS / WM_SECRET_KEYS_FILE) decrypts its secret",
                sub_id,
                offset,
            )
            return
        except (records.RecordError, ValueError, KeyError, TypeError) as exc:
            SKIPPED.labels("unreadable").inc()
            log.warning("skipping unreadable subscription record at offset %d: %s", offset, exc)
            return
        self.apply(sub_id, sub, offset, current)

    def apply(
        self, sub_id: str, sub: Subscription | None, offset: int, current: bool = True
    ) -> None:
        """Record the state of ``sub_id`` as of ``offset`` (None: deleted); ``current`` False
        marks a record to rewrite (secret in plain text or under an older key)."""
        with self._lock:
            entry = self._entries.get(sub_id)
            if entry is None or entry[0] < offset:
                self._entries[sub_id] = (offset, sub)
                if current:
                    self._stale.pop(sub_id, None)
                else:
                    self._stale[sub_id] = offset
            elif entry[0] > offset:  # read after a newer record this process wrote itself
                self._passed[sub_id] = (offset, sub)

    def passed(self, sub_id: str, after: int, before: int) -> tuple[Subscription | None] | None:
        """The newest record of ``sub_id`` at an offset between ``after`` and ``before`` that
        the table read only after this process had applied a newer write of its own (another
        writer's record that the own write superseded), as a 1-tuple; None when there is none."""
        with self._lock:
            found = self._passed.get(sub_id)
        return (found[1],) if found is not None and after < found[0] < before else None

    def offset_of(self, sub_id: str) -> int:
        """The offset the entry of ``sub_id`` comes from; -1 when the table holds none."""
        entry = self._entries.get(sub_id)
        return entry[0] if entry is not None else -1

    def stale(self) -> list[tuple[str, int]]:
        """(id, offset) of every entry whose record should be rewritten under the newest key."""
        with self._lock:
            return sorted(self._stale.items())

    def get_at(self, sub_id: str, offset: int) -> Subscription | None:
        """The entry of ``sub_id`` if it still comes from ``offset``, else None."""
        entry = self._entries.get(sub_id)
        return entry[1] if entry is not None and entry[0] == offset else None

    def get(self, sub_id: str) -> Subscription | None:
        entry = self._entries.get(sub_id)
        return entry[1] if entry else None

    def all(self) -> list[Subscription]:
        with self._lock:
            subs = [s for _, s in self._entries.values() if s is not None]
        return sorted(subs, key=lambda s: (s.created_at, s.id))

    def matching(self, event_type: str) -> Iterator[Subscription]:
        """Active subscriptions whose filter accepts ``event_type``."""
        return (s for s in self.all() if s.is_active and s.accepts(event_type))

    def close(self) -> None:
        self._stop.set()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
        if self._thread.ident is None:  # never started: the follower thread cannot close it
            self._consumer.close()
        elif self._thread.is_alive():
            self._thread.join(timeout=5)
