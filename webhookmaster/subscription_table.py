"""The subscription table: an in-memory view of the compacted subscriptions topic.

It reads the topic from the beginning to its end before :meth:`wait_loaded` returns, then keeps
following it in a thread. Writers apply their own acknowledged records at once
(:meth:`apply`), which gives read-your-writes on that replica; each entry remembers the offset it
came from, so a late older record never overwrites a newer one.

Secrets are stored encrypted (``secret_key_encrypted``, :mod:`webhookmaster.secret_box`). A
record's secret is decrypted once as it is loaded, to check that a configured key opens it, and
then kept encrypted in memory (:func:`secret_box.seal`, under a key of this process's own): it is
decrypted again when used, through a small LRU cache. A record no configured key opens is
logged, counted and skipped like any unreadable record. Records still in plain text
(``secret_key``) or under an older key are read and listed by :meth:`SubscriptionTable.stale`,
for the gateway to rewrite.

Reads never scan the table: fan-out matching and list pages come from
:class:`webhookmaster.subscription_index.SubscriptionIndex`, kept up to date on every change.

Memory: each subscription is kept as one ``bytes`` entry (:func:`pack`: position, offset and
fields in MessagePack, secret sealed), keyed by its id (a UUID as its 128-bit number,
:func:`entry_key`); the indexes hold those same objects. Readers get a :class:`Subscription`
built from it (:func:`unpack`, a few microseconds, cached for the recently read ones). About
0.45 KB per subscription in a running process, measured in ``bench/README.md``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter

from schemas import records
from schemas.topics import CIRCUITS, SUBSCRIPTIONS
from webhookmaster import secret_box
from webhookmaster.kafka_clients import consumer_config, record_offset, record_tp
from webhookmaster.secret_box import SecretBox
from webhookmaster.settings import Settings
from webhookmaster.subscription_index import SubscriptionIndex, position

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


# One tuple object per distinct filter, its strings interned (most subscriptions share a few),
# and a number for it, for entries to name their filter in a byte or two.
_FILTER_LIST: list[tuple[str, ...]] = []
_FILTER_NUMBER: dict[tuple[str, ...], int] = {}
_FILTER_LOCK = threading.Lock()


def _filter_number(event_types: tuple[str, ...]) -> int:
    number = _FILTER_NUMBER.get(event_types)
    if number is None:
        with _FILTER_LOCK:
            number = _FILTER_NUMBER.get(event_types)
            if number is None:
                _FILTER_LIST.append(tuple(sys.intern(t) for t in event_types))
                number = _FILTER_NUMBER[event_types] = len(_FILTER_LIST) - 1
    return number


def _filter(event_types: tuple[str, ...]) -> tuple[str, ...]:
    return _FILTER_LIST[_filter_number(event_types)]


class Protection(msgspec.Struct, frozen=True, gc=False):
    """The rarely set fields of a subscription, kept apart so that the common subscription
    (none of them set) stays small: its rate limit (deliveries per second), when an agent
    disabled it (auto-disable) why and when, and after a secret rotation the previous secret
    (plain or sealed, as ``Subscription.secret``) and until when deliveries still carry its
    signature."""

    rate_limit: float | None = None
    disabled_reason: str | None = None
    disabled_at: str | None = None
    previous_secret: str | bytes | None = None
    previous_secret_expires_at: str | None = None
    ordering: str | None = None  # "fifo" (None: "none")
    on_failure: str | None = None  # "halt" (None: "skip")

    @classmethod
    def of(
        cls,
        rate_limit: float | None = None,
        disabled_reason: str | None = None,
        disabled_at: str | None = None,
        previous_secret: str | bytes | None = None,
        previous_secret_expires_at: str | None = None,
        ordering: str | None = None,
        on_failure: str | None = None,
    ) -> Protection | None:
        """These fields, or None when none is set (the common case). A previous secret counts
        only with its expiry time; ``ordering`` "none" and ``on_failure`` "skip" are the
        defaults, kept as None."""
        if previous_secret is None or previous_secret_expires_at is None:
            previous_secret = previous_secret_expires_at = None
        ordering = None if ordering in (None, "none") else ordering
        on_failure = None if on_failure in (None, "skip") else on_failure
        if (
            rate_limit is None
            and disabled_reason is None
            and disabled_at is None
            and previous_secret is None
            and ordering is None
            and on_failure is None
        ):
            return None
        return cls(
            rate_limit,
            disabled_reason,
            disabled_at,
            previous_secret,
            previous_secret_expires_at,
            ordering,
            on_failure,
        )


_NONE = Protection()


class Subscription(msgspec.Struct, frozen=True, gc=False):
    """One subscription. ``secret`` is its signing secret: plain text (``str``, objects the API
    builds) or sealed (``bytes`` from :func:`secret_box.seal`, the table's); read it as
    :attr:`secret_key`.

    A slotted struct without a GC header: fields are strings, tuples of strings, booleans,
    bytes or a :class:`Protection` (the rarely set fields; None when none is set, so that the
    common subscription keeps to 80 bytes). A new field goes here with a default (records of
    earlier versions lack it) -- a rarely set one into :class:`Protection` -- in
    :meth:`from_stored` / :meth:`to_stored` / :meth:`to_record`, and in
    :class:`schemas.records.SubscriptionRecord`."""

    id: str
    target_url: str
    secret: str | bytes
    event_types: tuple[str, ...]
    is_active: bool
    created_at: str
    updated_at: str
    # rate limit and auto-disable (None: none of them set): :meth:`Protection.of`
    protection: Protection | None = None

    def __repr__(self) -> str:  # never the secret
        return f"Subscription(id={self.id!r}, target_url={self.target_url!r})"

    @property
    def rate_limit(self) -> float | None:
        """Deliveries per second; None: no limit."""
        return (self.protection or _NONE).rate_limit

    @property
    def disabled_reason(self) -> str | None:
        """Why an agent disabled it (auto-disable); None when it did not."""
        return (self.protection or _NONE).disabled_reason

    @property
    def disabled_at(self) -> str | None:
        return (self.protection or _NONE).disabled_at

    @property
    def ordering(self) -> str:
        """ "fifo": webhooks of one ordering key go one at a time, in order; "none": no order."""
        return (self.protection or _NONE).ordering or "none"

    @property
    def on_failure(self) -> str:
        """FIFO only: after a webhook ended FAILED, "skip" goes on with the next, "halt" stops
        its key until an operator skips or resends it."""
        return (self.protection or _NONE).on_failure or "skip"

    @property
    def secret_key(self) -> str:
        """The secret in plain text (a sealed one is decrypted, with a small cache)."""
        secret = self.secret
        return secret if isinstance(secret, str) else secret_box.reveal(secret)

    @property
    def previous_secret_expires_at(self) -> str | None:
        """Until when deliveries also carry the previous secret's signature (a rotation)."""
        return (self.protection or _NONE).previous_secret_expires_at

    @property
    def previous_secret_key(self) -> str | None:
        """The secret before the last rotation, in plain text, expired or not; None without
        one."""
        previous = (self.protection or _NONE).previous_secret
        if previous is None or isinstance(previous, str):
            return previous
        return secret_box.reveal(previous)

    def previous_secret_valid(self, now: datetime | None = None) -> str | None:
        """The previous secret while it is still valid at ``now`` (default: the current
        time), else None. The clock is read only when there is a previous secret."""
        expires = self.previous_secret_expires_at
        if expires is None:
            return None
        if records.parse_time(expires) <= (now or datetime.now(UTC)):
            return None
        return self.previous_secret_key

    def protection_with(self, **changes: Any) -> Protection | None:
        """The rarely set fields with ``changes`` applied (names as :meth:`Protection.of`)."""
        current = self.protection or _NONE
        fields = {name: getattr(current, name) for name in Protection.__struct_fields__}
        return Protection.of(**{**fields, **changes})

    def compact(self) -> Subscription:
        """This subscription as the table packs it (:func:`pack`): secret sealed, filter
        shared, one timestamp string when both are equal."""
        secret = self.secret
        if isinstance(secret, str):
            secret = secret_box.seal(secret)
        protection = self.protection
        if protection is not None and isinstance(protection.previous_secret, str):
            protection = msgspec.structs.replace(
                protection, previous_secret=secret_box.seal(protection.previous_secret)
            )
        updated = self.created_at if self.updated_at == self.created_at else self.updated_at
        return msgspec.structs.replace(
            self,
            secret=secret,
            event_types=_filter(self.event_types),
            updated_at=updated,
            protection=protection,
        )

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
        previous = None
        previous_token = data.get("previous_secret_key_encrypted")
        if previous_token is not None:
            if not isinstance(previous_token, str):
                raise TypeError("previous_secret_key_encrypted must be a string")
            previous, newest = box.decrypt(previous_token)
            current = current and newest
        for name in ("id", "created_at"):  # they make the entry's position: pack()
            if not isinstance(data[name], str) or not data[name].isprintable():
                raise ValueError(f"{name} must be printable text")
        sub = cls(
            id=data["id"],
            target_url=data["target_url"],
            secret=secret,
            event_types=tuple(data.get("event_types") or ()),
            is_active=bool(data.get("is_active", True)),
            created_at=data["created_at"],
            updated_at=data["updated_at"],
            protection=Protection.of(
                data.get("rate_limit"),
                data.get("disabled_reason"),
                data.get("disabled_at"),
                previous,
                data.get("previous_secret_expires_at"),
                data.get("ordering"),
                data.get("on_failure"),
            ),
        )
        return sub, current

    def to_stored(self, box: SecretBox) -> dict[str, Any]:
        """The topic record (the JSON object of :class:`schemas.records.SubscriptionRecord`):
        the secret encrypted under the newest key, never in plain text."""
        stored = self._fields(secret_key_encrypted=box.encrypt(self.secret_key))
        previous = self.previous_secret_key
        if previous is not None:
            stored["previous_secret_key_encrypted"] = box.encrypt(previous)
            stored["previous_secret_expires_at"] = self.previous_secret_expires_at
        return stored

    def to_record(self) -> dict[str, object]:
        """The API's view, secret in plain text (never written to the topic as such); of a
        previous secret only its expiry time."""
        return {
            **self._fields(secret_key=self.secret_key),
            "previous_secret_expires_at": self.previous_secret_expires_at,
        }

    def _fields(self, **secret: str) -> dict[str, object]:
        """Every field as JSON values, the secret as ``secret`` names it."""
        return {
            "id": self.id,
            "target_url": self.target_url,
            **secret,
            "event_types": list(self.event_types),
            "is_active": self.is_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "rate_limit": self.rate_limit,
            "disabled_reason": self.disabled_reason,
            "disabled_at": self.disabled_at,
            "ordering": self.ordering,
            "on_failure": self.on_failure,
        }

    def accepts(self, event_type: str) -> bool:
        """True when ``event_type`` passes this subscription's filter (empty: everything)."""
        return not self.event_types or event_type in self.event_types


class _Packed(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """What an entry holds after its position (MessagePack, trailing defaults left out): the
    offset of its record and the fields of :class:`Subscription` but ``id`` and ``created_at``."""

    offset: int
    target_url: str
    secret: bytes  # sealed
    filter: int  # in _FILTER_LIST
    is_active: bool = True
    updated_at: str | None = None  # None: equal to created_at
    rate_limit: float | None = None
    disabled_reason: str | None = None
    disabled_at: str | None = None
    previous_secret: bytes | None = None  # sealed
    previous_secret_expires_at: str | None = None
    ordering: str | None = None
    on_failure: str | None = None


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Packed)


def pack(sub: Subscription, offset: int) -> bytes:
    """``sub`` as the table keeps it, from the record at ``offset``: one bytes object,
    ``created_at`` NUL ``id`` NUL (:func:`subscription_index.position`: entries sort in list
    order), then the offset and the other fields, secret sealed (:meth:`Subscription.compact`).
    About 200 bytes where the struct and its strings took about 500."""
    if not (sub.id.isprintable() and sub.created_at.isprintable()):
        raise ValueError("a subscription's id and created_at must be printable text")
    sub = sub.compact()
    assert isinstance(sub.secret, bytes)
    more = sub.protection or _NONE
    assert more.previous_secret is None or isinstance(more.previous_secret, bytes)
    rest = _Packed(
        offset,
        sub.target_url,
        sub.secret,
        _filter_number(sub.event_types),
        sub.is_active,
        None if sub.updated_at is sub.created_at else sub.updated_at,
        more.rate_limit,
        more.disabled_reason,
        more.disabled_at,
        more.previous_secret,
        more.previous_secret_expires_at,
        more.ordering,
        more.on_failure,
    )
    return position(sub.created_at, sub.id) + _ENCODER.encode(rest)


def _rest(entry: bytes) -> _Packed:
    return _DECODER.decode(entry.split(b"\0", 2)[2])


def entry_offset(entry: bytes) -> int:
    """The offset of the record ``entry`` comes from."""
    return _rest(entry).offset


UNPACK_CACHE = 1024  # subscriptions most recently read, ready made


@functools.lru_cache(maxsize=UNPACK_CACHE)
def unpack(entry: bytes) -> Subscription:
    """The subscription of :func:`pack`'s ``entry`` (secret sealed, filter shared); the
    recently read ones from a cache (the struct is frozen: one object serves every reader)."""
    created_b, sub_id, packed = entry.split(b"\0", 2)
    created = created_b.decode()
    rest = _DECODER.decode(packed)
    return Subscription(
        sub_id.decode(),
        rest.target_url,
        rest.secret,
        _FILTER_LIST[rest.filter],
        rest.is_active,
        created,
        created if rest.updated_at is None else rest.updated_at,
        Protection.of(
            rest.rate_limit,
            rest.disabled_reason,
            rest.disabled_at,
            rest.previous_secret,
            rest.previous_secret_expires_at,
            rest.ordering,
            rest.on_failure,
        ),
    )


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def entry_key(sub_id: str) -> int | str:
    """The table's key for ``sub_id``: a UUID in its canonical text (as the API makes them) is
    kept as its 128-bit number, 48 bytes where the text takes 96; any other id as itself."""
    if len(sub_id) == 36 and _UUID.fullmatch(sub_id):
        return int(sub_id.replace("-", ""), 16)
    return sub_id


def _event_types(entry: bytes) -> tuple[str, ...]:
    return _FILTER_LIST[_rest(entry).filter]


PREFETCH_KB = 8192


def _release_free_heap() -> None:
    """Give the C heap's free memory back to the system (glibc's malloc_trim): loading leaves
    much of it behind, freed records and fetch buffers between the table's objects."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


class SubscriptionTable:
    """Follows the subscriptions topic; thread-safe reads of the latest state by id."""

    def __init__(self, settings: Settings, box: SecretBox | None = None) -> None:
        # First, so that a process without a usable key stops before it connects anywhere.
        self.box = box if box is not None else secret_box.from_settings(settings)
        self.topic = settings.topic(SUBSCRIPTIONS)
        self.circuits_topic = settings.topic(CIRCUITS)
        # Circuit breaker state by subscription id (the circuits topic): (state, since).
        self._circuits: dict[str, tuple[str, str]] = {}
        # Records read after a newer write of this process's own: id -> (offset, state).
        self._passed: dict[str, tuple[int, Subscription | None]] = {}
        self._config = consumer_config(
            settings,
            f"wm-table-{uuid.uuid4().hex}",
            # it assigns partitions itself and never joins its group: no protocol to ask
            **{"enable.partition.eof": True, "group.protocol": "classic"},
            # librdkafka's default prefetch (64 MiB) would hold much of the topic at start-up;
            # this much loads as fast (measured) and leaves less heap behind
            **{"queued.max.messages.kbytes": PREFETCH_KB, "fetch.max.bytes": PREFETCH_KB * 1024},
        )
        self._consumer: Consumer | None = None  # made by start(): nothing connects before
        # entry_key(id) -> its entry (pack()), or the offset of its tombstone
        self._entries: dict[int | str, bytes | int] = {}
        # Entries read from records to rewrite (plain text, older key): id -> offset.
        self._stale: dict[str, int] = {}
        self._index = SubscriptionIndex()
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._stop = threading.Event()
        self._end: dict[tuple[str, int], int] = {}
        # Next offset the follower will read, per (topic, partition), and a condition on it.
        self._position: dict[tuple[str, int], int] = {}
        self._progress = threading.Condition()
        # A second client of the same config asks the topic's end (wait_caught_up): the
        # follower's own one is busy polling.
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()
        self._partitions: list[int] = []
        self._thread = threading.Thread(target=self._follow, name="subscription-table", daemon=True)

    @property
    def _kafka(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        return self._consumer

    def start(self) -> None:
        metadata = self._kafka.list_topics(self.topic, timeout=30).topics[self.topic]
        if metadata.error is not None:
            raise RuntimeError(f"subscriptions topic {self.topic}: {metadata.error.str()}")
        parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        circuits = self._kafka.list_topics(self.circuits_topic, timeout=30).topics[
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
        self._kafka.assign(parts)
        if not self._end:
            self._loaded.set()
        self._thread.start()

    def _watermarks(
        self, tp: TopicPartition, deadline: float, client: Consumer | None = None
    ) -> tuple[int, int]:
        """Low and high watermark; retried while the partition has no leader yet."""
        while True:
            try:
                return (client or self._kafka).get_watermark_offsets(
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
            msg = self._kafka.poll(0.2)
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
        self._kafka.close()

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
                _release_free_heap()
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
        marks a record to rewrite (secret in plain text or under an older key). The table keeps
        the packed form (:func:`pack`)."""
        new: bytes | int = offset if sub is None else pack(sub, offset)
        key = entry_key(sub_id)
        with self._lock:
            old = self._entries.get(key)
            old_offset = -1 if old is None else old if isinstance(old, int) else entry_offset(old)
            if old is None or old_offset < offset:
                if isinstance(old, bytes):
                    self._index.remove(old, _event_types(old))
                if isinstance(new, bytes):
                    assert sub is not None
                    self._index.add(new, _filter(sub.event_types), sub.is_active)
                self._entries[key] = new
                if current:
                    self._stale.pop(sub_id, None)
                else:
                    self._stale[sub_id] = offset
            elif old_offset > offset:  # read after a newer record this process wrote itself
                self._passed[sub_id] = (offset, None if sub is None else sub.compact())

    def passed(self, sub_id: str, after: int, before: int) -> tuple[Subscription | None] | None:
        """The newest record of ``sub_id`` at an offset between ``after`` and ``before`` that
        the table read only after this process had applied a newer write of its own (another
        writer's record that the own write superseded), as a 1-tuple; None when there is none."""
        with self._lock:
            found = self._passed.get(sub_id)
        return (found[1],) if found is not None and after < found[0] < before else None

    def offset_of(self, sub_id: str) -> int:
        """The offset the entry of ``sub_id`` comes from; -1 when the table holds none."""
        entry = self._entries.get(entry_key(sub_id))
        if entry is None:
            return -1
        return entry if isinstance(entry, int) else entry_offset(entry)

    def stale(self) -> list[tuple[str, int]]:
        """(id, offset) of every entry whose record should be rewritten under the newest key."""
        with self._lock:
            return sorted(self._stale.items())

    def get_at(self, sub_id: str, offset: int) -> Subscription | None:
        """The entry of ``sub_id`` if it still comes from ``offset``, else None."""
        entry = self._entries.get(entry_key(sub_id))
        if isinstance(entry, bytes) and entry_offset(entry) == offset:
            return unpack(entry)
        return None

    def get(self, sub_id: str) -> Subscription | None:
        entry = self._entries.get(entry_key(sub_id))
        return unpack(entry) if isinstance(entry, bytes) else None

    def __len__(self) -> int:
        """How many subscriptions exist."""
        return len(self._index)

    def page(self, after: tuple[str, str] | None, limit: int) -> tuple[list[Subscription], bool]:
        """The first ``limit`` subscriptions after position ``after`` in (created_at, id) order,
        and whether more follow. Keyset paging: a subscription that exists throughout a listing
        appears in exactly one page, whatever is written meanwhile."""
        with self._lock:
            entries, more = self._index.page(after, limit)
        return [unpack(entry) for entry in entries], more

    def all(self) -> list[Subscription]:
        """Every subscription in (created_at, id) order: O(all), for tests and tools only."""
        return self.page(None, max(1, len(self._index)))[0]

    def matching(self, event_type: str) -> Iterator[Subscription]:
        """Active subscriptions whose filter accepts ``event_type``, in (created_at, id) order;
        reads only the index entries of ``event_type`` and the wildcard set."""
        with self._lock:
            entries = self._index.matching(event_type)
        return map(unpack, entries)

    def close(self) -> None:
        self._stop.set()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
        if self._thread.ident is None:  # never started: the follower thread cannot close it
            if self._consumer is not None:
                self._consumer.close()
        elif self._thread.is_alive():
            self._thread.join(timeout=5)
