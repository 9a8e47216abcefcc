"""Record formats on the pipeline's topics, as Python types with their parsers.

A webhook record (ingest and retry topics) carries the body to deliver as its value, byte for
byte, and its metadata in record headers (:class:`Webhook`); producers that cannot set headers
may send the JSON envelope instead (:class:`IngestRecord`), whose ``payload`` member's exact
bytes are delivered. Every other record value is a UTF-8 JSON object. Each JSON format is
declared once, as a msgspec Struct whose constraints carry the field rules; the JSON Schema files
beside this module (``*.schema.json``, for outside producers) are generated from them
(``python -m schemas.generate``), and tests/schemas/test_records.py holds schema and parser to
the same verdicts.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.inspect
import orjson
from msgspec import UNSET, Meta, UnsetType

from schemas import json_text

# Namespace for ids derived from other ids (fan-out expansion, records produced without an id).
WEBHOOK_NAMESPACE = uuid.UUID("7b0e6a2e-6d6b-4c4e-9a35-2f3c1a9d5e10")

# Namespace for ids derived from an Idempotency-Key (:func:`keyed_id`).
IDEMPOTENCY_NAMESPACE = uuid.UUID("3f1c8a52-0b7e-4d9a-8e61-5c2d7f4a9b03")

Outcome = Literal["delivered", "retrying", "failed"]
_R = TypeVar("_R")


class Status(StrEnum):
    """A webhook's delivery status, as the status projector stores it and the status API
    shows it."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


# Field rules, shared by the JSON formats below (as msgspec constraints, which the generated JSON
# Schema files state) and by the header form's checks (:func:`_checked`). ``(?![\\s\\S])`` ends a
# pattern in ECMA and Python regexes alike (Python's ``$`` also matches before a final newline).
MAX_ID_LENGTH = 200
MAX_EVENT_TYPE_LENGTH = 200
_END = r"(?![\s\S])"
# What :func:`event_type_problem` accepts, as a JSON Schema / ECMA regex (for the OpenAPI document).
EVENT_TYPE_PATTERN = "^[!-~]([ -~]*[!-~])?$"
WEBHOOK_ID_PATTERN = "^[ -~]+" + _END
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END
MAX_ATTEMPT = 1000
# Delivery chains: chain 0 is the webhook's first delivery, each resend or recover starts the next
# (status_projector.ordering keeps the order key of chain c above every key of chain c - 1).
MAX_CHAIN = 10_000

EventType = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_EVENT_TYPE_LENGTH,
        pattern=EVENT_TYPE_PATTERN[:-1] + _END,
        description="1-200 printable ASCII characters, no space at either end (it is sent as the "
        "X-Webhook-Event-Type header).",
    ),
]
WebhookId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=WEBHOOK_ID_PATTERN,
        description="Stable id sent as webhook-id; receivers de-duplicate on it. Printable ASCII "
        "(it is sent as a header).",
    ),
]
Uuid = Annotated[str, Meta(pattern=UUID_PATTERN, extra_json_schema={"format": "uuid"})]
# RFC 3339 date-time as JSON Schema's format reads it (T and Z in either case, seconds, an
# optional fraction, a zone); whether the day exists (29th-31st) is checked apart.
TIMESTAMP_PATTERN = (
    "^(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3])"
    ":[0-5][0-9]:[0-5][0-9]([.][0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])" + _END
)
Timestamp = Annotated[
    str,
    Meta(
        pattern=TIMESTAMP_PATTERN,
        extra_json_schema={"format": "date-time"},
        description="RFC 3339 with a time zone.",
    ),
]
MAX_ORDERING_KEY_LENGTH = 200
OrderingKey = Annotated[str, Meta(min_length=1, max_length=MAX_ORDERING_KEY_LENGTH)]
# JSON Schema's integer: a number with no fractional part (so 1.0 is the integer 1).
Attempt = Annotated[float, Meta(ge=0, le=MAX_ATTEMPT, multiple_of=1)]


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    """A JSON record: unknown members are refused, timestamps must be RFC 3339 with a zone."""

    def __post_init__(self) -> None:
        for name in _TIME_FIELDS.get(type(self), ()):
            moment = getattr(self, name)
            if isinstance(moment, str) and moment[8:10] > "28" and not _day_exists(moment):
                raise ValueError(f"{name} must be an RFC 3339 timestamp")


_CHAIN_TEXT = (
    "Delivery chain: 0 for the webhook's first delivery, then one more for each resend "
    "(operator redelivery). Producers leave it out."
)
_CHAIN_START_TEXT = (
    "Attempts made before this chain began (its retry ladder counts from there). Producers "
    "leave it out."
)


class IngestRecord(_Record):
    """The JSON envelope form of a record on the ingest topic, for producers that cannot set
    record headers: one webhook to deliver. Key: the subscription id (or, for a fan-out event,
    the webhook id). The exact bytes of the payload member's value are delivered. The gateway
    produces the header form instead (:class:`Webhook`): the record value is the body, and
    wm-event-type, wm-webhook-id, wm-subscription-id, wm-received-at, wm-metadata, wm-attempt,
    wm-due-at headers carry the rest."""

    event_type: EventType
    payload: Annotated[
        msgspec.Raw,
        Meta(description="Any JSON value; its exact bytes are delivered as the request body."),
    ]
    webhook_id: (
        Annotated[
            WebhookId,
            Meta(
                description="Stable id sent as webhook-id; receivers de-duplicate on it. Printable "
                "ASCII (it is sent as a header). When absent, derived from the record's "
                "topic, partition and offset."
            ),
        ]
        | UnsetType
    ) = UNSET
    subscription_id: Annotated[
        Uuid | None,
        Meta(
            description="Target subscription. Null or absent: fan-out to every active subscription "
            "whose event_types contains event_type (or is empty)."
        ),
    ] = None
    received_at: (
        Annotated[
            Timestamp,
            Meta(
                description="When the webhook was accepted. When absent, the record's Kafka "
                "timestamp."
            ),
        ]
        | UnsetType
    ) = UNSET
    metadata: Annotated[
        dict[str, Any],
        Meta(description="Free-form ingest metadata (source, remote address, idempotency key)."),
    ] = {}
    attempt: Annotated[
        Attempt,
        Meta(description="Attempts already made; set by the retry ladder. Producers leave it out."),
    ] = 0
    due_at: Annotated[
        Timestamp | None, Meta(description="When the retry was due; set by the retry ladder.")
    ] = None
    chain: Annotated[int, Meta(ge=0, le=MAX_CHAIN, description=_CHAIN_TEXT)] = 0
    chain_start: Annotated[int, Meta(ge=0, le=MAX_ATTEMPT, description=_CHAIN_START_TEXT)] = 0
    ordering_key: Annotated[
        OrderingKey | None,
        Meta(
            description="FIFO subscriptions: webhooks with the same ordering key are delivered "
            "one at a time, in order. Null or absent: the subscription id (one order per "
            "subscription). Ignored when the subscription's ordering is none."
        ),
    ] = None


class AttemptEvent(_Record):
    """Value of a record on the attempts topic: one delivery attempt and its outcome. Key: the
    webhook id."""

    webhook_id: str
    subscription_id: Uuid
    event_type: str
    target_url: str
    attempt_number: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_ATTEMPT,
            description="1-based: the first attempt, then one per retry tier; a resent "
            "webhook's attempts continue the numbering.",
        ),
    ]
    started_at: Timestamp
    duration_ms: Annotated[float, Meta(ge=0)]
    status_code: int | None
    error: str | None
    response_excerpt: (
        Annotated[str, Meta(max_length=4096, description="The first 4 KiB of the response body.")]
        | None
    )
    outcome: Outcome
    next_attempt_at: Timestamp | None
    received_at: Timestamp
    attempt_id: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="Unique per HTTP request: an attempt redone after a crash has its own "
                "id (and the same attempt_number).",
            ),
        ]
        | UnsetType
    ) = UNSET
    chain: Annotated[int, Meta(ge=0, le=MAX_CHAIN, description="The attempt's delivery chain.")] = 0


class WebhookJson(_Record):
    """A webhook as JSON (inside a dead letter): the body as its exact text."""

    webhook_id: str
    subscription_id: str | None
    event_type: str
    body: str
    received_at: Timestamp
    metadata: dict[str, Any]
    attempt: Annotated[int, Meta(ge=0)]
    due_at: Timestamp | None
    chain: Annotated[int, Meta(ge=0, le=MAX_CHAIN)] = 0
    chain_start: Annotated[int, Meta(ge=0, le=MAX_ATTEMPT)] = 0
    ordering_key: str | UnsetType | None = UNSET


class DeadLetterSource(msgspec.Struct):
    """Where the record that failed was read."""

    topic: str | UnsetType = UNSET
    partition: int | UnsetType = UNSET
    offset: int | UnsetType = UNSET
    headers: (
        Annotated[dict[str, str], Meta(description="The unreadable record's headers, as text.")]
        | UnsetType
    ) = UNSET


class DeadLetter(_Record):
    """Value of a record on the dead-letter topic: a webhook that failed for good, or a record
    that could not be read. Key: as the source."""

    reason: str
    failed_at: Timestamp
    webhook_id: str | None
    subscription_id: str | None
    record: Annotated[
        WebhookJson | None, Meta(description="The webhook as it last was, when it could be read.")
    ]
    raw: Annotated[
        str | None,
        Meta(
            description="The undecodable value as text (replacement characters), when it could not."
        ),
    ]
    source: Annotated[
        DeadLetterSource,
        Meta(description="Topic, partition and offset (and headers) of the record that failed."),
    ]


_RateLimit = Annotated[
    float,
    Meta(
        gt=0,
        description="Most deliveries per second to this subscription's endpoint; absent or "
        "null: no limit.",
    ),
]
_DisabledReason = Annotated[
    str,
    Meta(
        description="Why a delivery agent disabled the subscription (auto-disable: the "
        "endpoint answered 410 Gone, or only failed for WM_AUTO_DISABLE_AFTER); null once it "
        "is re-enabled."
    ),
]
_DisabledAt = Annotated[Timestamp, Meta(description="When it was auto-disabled.")]


class SubscriptionRecord(_Record):
    """Value of a record on the compacted subscriptions topic. Key: the subscription id; a null
    value (tombstone) deletes it. The signing secret is stored encrypted (secret_key_encrypted);
    records of earlier versions held it in plain text (secret_key), which readers still accept
    and the gateway rewrites encrypted at start-up."""

    id: Uuid
    target_url: Annotated[str, Meta(extra_json_schema={"format": "uri"})]
    secret_key_encrypted: Annotated[
        str,
        Meta(
            pattern="^gAAAAA[A-Za-z0-9_-]+=*" + _END,
            description="The signing secret as a Fernet token (https://github.com/fernet/spec) "
            "under the newest key of WM_SECRET_KEYS / WM_SECRET_KEYS_FILE (webhookmaster/"
            "secret_box.py). It decrypts to the empty string when the subscription has "
            "no secret (ingest unsigned, deliveries unsigned).",
        ),
    ]
    event_types: list[Annotated[str, Meta(min_length=1)]]
    is_active: bool
    created_at: Timestamp
    updated_at: Timestamp
    rate_limit: _RateLimit | UnsetType | None = UNSET
    disabled_reason: _DisabledReason | UnsetType | None = UNSET
    disabled_at: _DisabledAt | UnsetType | None = UNSET
    previous_secret_key_encrypted: (
        Annotated[
            str,
            Meta(
                pattern="^gAAAAA[A-Za-z0-9_-]+=*" + _END,
                description="After a secret rotation: the previous signing secret, encrypted "
                "as secret_key_encrypted; deliveries carry its signature too until "
                "previous_secret_expires_at.",
            ),
        ]
        | UnsetType
    ) = UNSET
    previous_secret_expires_at: (
        Annotated[
            Timestamp,
            Meta(description="Until when deliveries also carry the previous secret's signature."),
        ]
        | UnsetType
    ) = UNSET
    ordering: (
        Annotated[
            Literal["none", "fifo"],
            Meta(description="fifo: one webhook at a time per ordering key, in order."),
        ]
        | UnsetType
    ) = UNSET
    on_failure: (
        Annotated[
            Literal["skip", "halt"],
            Meta(description="FIFO: after a FAILED webhook, go on (skip) or stop the key (halt)."),
        ]
        | UnsetType
    ) = UNSET
    secret_key: (
        Annotated[
            str,
            Meta(
                extra_json_schema={"deprecated": True},
                description="Records written before secrets were encrypted: the secret in plain "
                "text. Never written any more.",
            ),
        ]
        | UnsetType
    ) = UNSET


def _is_timestamp(t: msgspec.inspect.Type) -> bool:
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_is_timestamp(member) for member in t.types)
    return isinstance(t, msgspec.inspect.StrType) and t.pattern == TIMESTAMP_PATTERN


def _time_fields(record: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields of ``record`` declared as :data:`Timestamp`."""
    info = msgspec.inspect.type_info(record)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(field.name for field in info.fields if _is_timestamp(field.type))


_TIME_FIELDS: dict[type, tuple[str, ...]] = {
    record: _time_fields(record)
    for record in (IngestRecord, AttemptEvent, WebhookJson, DeadLetter, SubscriptionRecord)
}
# The JSON record formats, by the name of their schema file (schemas/<name>.schema.json).
JSON_RECORDS: dict[str, type[msgspec.Struct]] = {
    "ingest_record": IngestRecord,
    "attempt_event": AttemptEvent,
    "dead_letter": DeadLetter,
    "subscription": SubscriptionRecord,
}


def decoder(record_type: type[_R]) -> msgspec.json.Decoder[_R]:
    """A decoder of ``record_type`` from JSON bytes (raises ``msgspec.ValidationError``)."""
    return msgspec.json.Decoder(record_type)


class RecordError(ValueError):
    """A record that does not match its schema; the message says why."""


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with fixed-width microseconds, so that the strings sort by time."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))


def derived_id(parent: str, child: str) -> str:
    """A stable id derived from two others (fan-out: the event id and the subscription id)."""
    return str(uuid.uuid5(WEBHOOK_NAMESPACE, f"{parent}/{child}"))


def derived_ids(parent: str, children: Sequence[str]) -> list[str]:
    """``[derived_id(parent, c) for c in children]``, hashing the shared prefix once (an
    agent expands one fan-out record into up to thousands of ids)."""
    prefix = hashlib.sha1(WEBHOOK_NAMESPACE.bytes + f"{parent}/".encode(), usedforsecurity=False)
    out = []
    for child in children:
        digest = prefix.copy()
        digest.update(child.encode())
        raw = bytearray(digest.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def keyed_id(scope: str, key: str) -> str:
    """The id an ``Idempotency-Key`` stands for in ``scope`` (a subscription id, or
    ``"events"``): the same key in the same scope always gives the same id."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{scope}/{key}"))


def dumps(record: Any) -> bytes:
    return orjson.dumps(record)


# Record headers of a webhook record (UTF-8 text values). ``wm-event-type`` marks the form.
H_EVENT_TYPE = "wm-event-type"
H_WEBHOOK_ID = "wm-webhook-id"
H_SUBSCRIPTION_ID = "wm-subscription-id"
H_RECEIVED_AT = "wm-received-at"
H_METADATA = "wm-metadata"  # a JSON object
H_ATTEMPT = "wm-attempt"
H_DUE_AT = "wm-due-at"
H_CHAIN = "wm-chain"  # delivery chain (absent: 0, the first delivery)
H_CHAIN_START = "wm-chain-start"  # attempts made before the chain began (absent: 0)
# Idempotency marker: a first attempt whose id the agents de-duplicate (fan-out expansion,
# Idempotency-Key); value "1". Records without it are never de-duplicated.
H_IDEMPOTENT = "wm-idempotent"
IDEMPOTENT: tuple[str, bytes] = (H_IDEMPOTENT, b"1")
H_ORDERING_KEY = "wm-ordering-key"  # FIFO subscriptions: the order a webhook belongs to
H_TRACEPARENT = "traceparent"  # W3C trace context; optional, a malformed one is ignored
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook to deliver: the exact body bytes and what the pipeline knows of it. On the
    ingest topic (and, with ``attempt`` > 0, handed back by the retry scheduler). Key: the
    subscription id, or the webhook id for a fan-out event."""

    webhook_id: str
    subscription_id: str | None  # None: fan-out to every matching active subscription
    event_type: str
    body: bytes
    received_at: str  # RFC 3339, UTC
    metadata: bytes = b"{}"  # a JSON object: source, remote address, idempotency key, ...
    attempt: int = 0  # attempts already made
    due_at: str | None = None  # when this retry was due (set by the ladder)
    traceparent: str | None = None  # the trace this webhook belongs to (opt-in tracing)
    chain: int = 0  # delivery chain: 0 first delivery, +1 per resend
    chain_start: int = 0  # attempts made before this chain began
    ordering_key: str | None = None  # FIFO subscriptions; None: the subscription id

    @property
    def chain_attempt(self) -> int:
        """Attempts already made in this chain (the retry ladder's position)."""
        return self.attempt - self.chain_start

    def headers(self) -> list[tuple[str, bytes]]:
        """The record headers that carry everything but the body."""
        headers = [
            (H_EVENT_TYPE, self.event_type.encode()),
            (H_WEBHOOK_ID, self.webhook_id.encode()),
            (H_RECEIVED_AT, self.received_at.encode()),
            (H_METADATA, self.metadata),
        ]
        if self.subscription_id is not None:
            headers.append((H_SUBSCRIPTION_ID, self.subscription_id.encode()))
        if self.attempt:
            headers.append((H_ATTEMPT, str(self.attempt).encode()))
        if self.due_at is not None:
            headers.append((H_DUE_AT, self.due_at.encode()))
        if self.traceparent is not None:
            headers.append((H_TRACEPARENT, self.traceparent.encode()))
        if self.chain:
            headers.append((H_CHAIN, str(self.chain).encode()))
            headers.append((H_CHAIN_START, str(self.chain_start).encode()))
        if self.ordering_key is not None:
            headers.append((H_ORDERING_KEY, self.ordering_key.encode()))
        return headers

    def replace(self, **changes: Any) -> Webhook:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The :class:`WebhookJson` form."""
        return {
            "webhook_id": self.webhook_id,
            "subscription_id": self.subscription_id,
            "event_type": self.event_type,
            "body": self.body.decode("utf-8", errors="replace"),
            "received_at": self.received_at,
            "metadata": orjson.loads(self.metadata),
            "attempt": self.attempt,
            "due_at": self.due_at,
            **({"chain": self.chain, "chain_start": self.chain_start} if self.chain else {}),
            **({"ordering_key": self.ordering_key} if self.ordering_key is not None else {}),
        }


def event_type_problem(value: object) -> str | None:
    """Why ``value`` cannot be an event type, or None when it can.

    An event type travels as the ``X-Webhook-Event-Type`` header of every delivery, so it must
    be a string of 1 to 200 printable ASCII characters (U+0020-U+007E): no control character
    (C0, DEL, C1: so no CR, LF, NUL), nothing outside ASCII, and no space at either end (a header
    value loses those). Shared by the gateway and the consumers of direct Kafka records.
    """
    if not isinstance(value, str):
        return "must be a string"
    if not value or len(value) > MAX_EVENT_TYPE_LENGTH:
        return f"must be 1 to {MAX_EVENT_TYPE_LENGTH} characters long"
    if not all(" " <= c <= "~" for c in value):
        return "must be printable ASCII (no control characters, CR, LF, NUL or non-ASCII)"
    if value[0] == " " or value[-1] == " ":
        return "must not start or end with a space"
    return None


def webhook_id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a webhook id (it travels as the ``webhook-id`` header)."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    if not value.isascii() or not value.isprintable():
        return "must be printable ASCII"
    return None


def parse_webhook(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    fallback_id: str | Callable[[], str],
    fallback_time: str | Callable[[], str],
    *,
    check_body: bool = True,
) -> Webhook:
    """A webhook record in either form (headers, or the JSON envelope). ``fallback_id`` and
    ``fallback_time`` (values, or functions computed only when needed) stand in for the webhook
    id and received time when a direct producer left them out. ``check_body``: refuse a header
    form record whose value is not one JSON document."""
    if value is None:
        raise RecordError("record has no value")
    found = {}
    for name, raw in headers or ():
        if (name.startswith("wm-") or name == H_TRACEPARENT) and name not in found:
            found[name] = raw
    if H_EVENT_TYPE in found:
        record = _from_headers(value, found, fallback_id, fallback_time, check_body)
    else:
        record = _from_envelope(value, fallback_id, fallback_time)
    traceparent = found.get(H_TRACEPARENT)
    if traceparent is not None:
        return record.replace(traceparent=valid_traceparent(traceparent))
    return record


def is_marked(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    """Whether a record's headers carry the idempotency marker (:data:`IDEMPOTENT`)."""
    return any(name == H_IDEMPOTENT and value == b"1" for name, value in headers or ())


def valid_traceparent(raw: bytes | str | None) -> str | None:
    """``raw`` as text when it is a well-formed W3C traceparent, else None: a bad one is
    dropped, never an error (tracing must not refuse a webhook)."""
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    if raw is not None and TRACEPARENT.match(raw):
        return raw
    return None


def _header_text(found: dict[str, bytes | None], name: str) -> str | None:
    raw = found.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"header {name} is not UTF-8") from None


def _from_headers(
    value: bytes,
    found: dict[str, bytes | None],
    fallback_id: str | Callable[[], str],
    fallback_time: str | Callable[[], str],
    check_body: bool,
) -> Webhook:
    if check_body:
        try:
            json_text.check(value)
        except json_text.JsonTextError as exc:
            raise RecordError(f"the value is not one JSON document: {exc}") from None
    attempt = _header_int(found, H_ATTEMPT)
    chain = _header_int(found, H_CHAIN)
    chain_start = _header_int(found, H_CHAIN_START)
    metadata = found.get(H_METADATA)
    if metadata is not None:
        try:
            is_object = isinstance(orjson.loads(metadata), dict)
        except orjson.JSONDecodeError:
            is_object = False
        if not is_object:
            raise RecordError(f"header {H_METADATA} must be a JSON object")
    return _checked(
        webhook_id=_header_text(found, H_WEBHOOK_ID) or _value(fallback_id),
        subscription_id=_header_text(found, H_SUBSCRIPTION_ID),
        event_type=_header_text(found, H_EVENT_TYPE),
        body=value,
        received_at=_header_text(found, H_RECEIVED_AT) or _value(fallback_time),
        metadata=metadata or b"{}",
        attempt=attempt,
        due_at=_header_text(found, H_DUE_AT),
        chain=chain,
        chain_start=chain_start,
        ordering_key=_header_text(found, H_ORDERING_KEY),
    )


def _header_int(found: dict[str, bytes | None], name: str) -> Any:
    """An integer header (absent: 0); its range is checked by :func:`_checked`."""
    text = _header_text(found, name)
    try:
        return int(text) if text is not None else 0
    except ValueError:
        raise RecordError(f"header {name} must be a non-negative integer") from None


_ENVELOPE_FIELDS = frozenset(IngestRecord.__struct_fields__)
_ENVELOPE = msgspec.json.Decoder(IngestRecord)


def _from_envelope(
    value: bytes, fallback_id: str | Callable[[], str], fallback_time: str | Callable[[], str]
) -> Webhook:
    try:
        members = json_text.members(value)  # exact bytes; one JSON object; no name twice
    except json_text.NotAnObject:
        raise RecordError("value is not a JSON object") from None
    except json_text.JsonTextError as exc:
        raise RecordError(f"value is not JSON: {exc}") from None
    try:
        record = _decode_envelope(value, members)
    except msgspec.ValidationError as exc:
        _explain(members)  # the reason in the words of the field rules, when they have one
        raise RecordError(str(exc)) from None
    webhook_id = _value(fallback_id) if record.webhook_id is UNSET else record.webhook_id
    received_at = _value(fallback_time) if record.received_at is UNSET else record.received_at
    return _checked(
        webhook_id=webhook_id,
        subscription_id=record.subscription_id,
        event_type=record.event_type,
        body=members["payload"],
        received_at=received_at,
        metadata=members.get("metadata", b"{}"),
        attempt=int(record.attempt),
        due_at=record.due_at,
        chain=record.chain,
        chain_start=record.chain_start,
        ordering_key=record.ordering_key,
    )


def _decode_envelope(value: bytes, members: dict[str, bytes]) -> IngestRecord:
    """The envelope, read by msgspec. A payload or metadata object msgspec cannot read (a lone
    surrogate escape, nesting beyond its depth limit) is left out of what it reads: json_text
    accepted it."""
    try:
        return _ENVELOPE.decode(value)
    except msgspec.ValidationError:
        raise
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError too
        pass
    stand_ins = {"payload": b"null"}  # the free-form members, checked here for their type
    if isinstance(json_text.value(members.get("metadata", b"{}")), dict):
        stand_ins["metadata"] = b"{}"
    fields = [orjson.dumps(name) + b":" + stand_ins.get(name, raw) for name, raw in members.items()]
    try:
        return _ENVELOPE.decode(b"{" + b",".join(fields) + b"}")
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise RecordError(f"value is not JSON: {exc}") from None


def _explain(members: dict[str, bytes]) -> None:
    """Raise the :class:`RecordError` the field rules give for an envelope msgspec refused."""
    unknown = set(members) - _ENVELOPE_FIELDS
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "payload" not in members:
        raise RecordError("missing field: payload")
    data = {name: json_text.value(raw) for name, raw in members.items() if name != "payload"}
    if not isinstance(data.get("metadata", {}), dict):
        raise RecordError("metadata must be an object")
    attempt = data.get("attempt", 0)
    if isinstance(attempt, float) and attempt.is_integer():
        attempt = int(attempt)
    _checked(
        webhook_id=data.get("webhook_id", "-"),
        subscription_id=data.get("subscription_id"),
        event_type=data.get("event_type"),
        body=b"",
        received_at=data.get("received_at", "1970-01-01T00:00:00Z"),
        metadata=b"{}",
        attempt=attempt,
        due_at=data.get("due_at"),
        ordering_key=data.get("ordering_key"),
    )


def _checked(
    *,
    webhook_id: Any,
    subscription_id: Any,
    event_type: Any,
    body: bytes,
    received_at: Any,
    metadata: bytes,
    attempt: Any,
    due_at: Any,
    chain: Any = 0,
    chain_start: Any = 0,
    ordering_key: Any = None,
) -> Webhook:
    problem = event_type_problem(event_type)
    if problem:
        raise RecordError(f"event_type {problem}")
    problem = webhook_id_problem(webhook_id)
    if problem:
        raise RecordError(f"webhook_id {problem}")
    if subscription_id is not None and not _is_uuid(subscription_id):
        raise RecordError("subscription_id must be a UUID string or null")
    if not isinstance(received_at, str) or not _is_time(received_at):
        raise RecordError("received_at must be an RFC 3339 timestamp")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt <= 1000:
        raise RecordError("attempt must be an integer from 0 to 1000")
    if due_at is not None and (not isinstance(due_at, str) or not _is_time(due_at)):
        raise RecordError("due_at must be an RFC 3339 timestamp or null")
    if not isinstance(chain, int) or isinstance(chain, bool) or not 0 <= chain <= MAX_CHAIN:
        raise RecordError(f"chain must be an integer from 0 to {MAX_CHAIN}")
    if (
        not isinstance(chain_start, int)
        or isinstance(chain_start, bool)
        or not 0 <= chain_start <= attempt
    ):
        raise RecordError("chain_start must be an integer from 0 to attempt")
    if ordering_key is not None and (
        not isinstance(ordering_key, str) or not 0 < len(ordering_key) <= MAX_ORDERING_KEY_LENGTH
    ):
        raise RecordError(
            f"ordering_key must be null or a string of 1 to {MAX_ORDERING_KEY_LENGTH} characters"
        )
    return Webhook(
        webhook_id=webhook_id,
        subscription_id=subscription_id,
        event_type=event_type,
        body=body,
        received_at=received_at,
        metadata=metadata,
        attempt=attempt,
        due_at=due_at,
        chain=chain,
        chain_start=chain_start,
        ordering_key=ordering_key,
    )


def webhook_from_json(data: Any, fallback_id: str, fallback_time: str) -> Webhook:
    """A webhook from its JSON form inside a dead letter: :class:`WebhookJson`, or the envelope
    (:class:`IngestRecord`) that older dead letters carry."""
    if not isinstance(data, dict):
        raise RecordError("record must be an object")
    if "body" not in data:
        return _from_envelope(orjson.dumps(data), fallback_id, fallback_time)
    body = data["body"]
    if not isinstance(body, str):
        raise RecordError("body must be a string")
    metadata = data.get("metadata") or {}
    return _checked(
        webhook_id=data.get("webhook_id", fallback_id),
        subscription_id=data.get("subscription_id"),
        event_type=data.get("event_type"),
        body=body.encode(),
        received_at=data.get("received_at", fallback_time),
        metadata=orjson.dumps(metadata),
        attempt=data.get("attempt", 0),
        due_at=data.get("due_at"),
        chain=data.get("chain", 0),
        chain_start=data.get("chain_start", 0),
        ordering_key=data.get("ordering_key"),
    )


def parse_subscription(value: bytes) -> dict[str, Any]:
    """A subscription record's JSON object (see :class:`SubscriptionRecord`); only its id is
    checked here, readers check the fields they use."""
    data = orjson.loads(value)
    if not isinstance(data, dict) or not _is_uuid(data.get("id")):
        raise RecordError("subscription record needs an id")
    return data


def _value(given: str | Callable[[], str]) -> str:
    return given() if callable(given) else given


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def _is_time(value: str) -> bool:
    """RFC 3339 ``date-time`` (as JSON Schema's format): :data:`TIMESTAMP_PATTERN` on a day
    that exists (:func:`parse_time` reads every such text)."""
    return _TIMESTAMP.match(value) is not None and (value[8:10] <= "28" or _day_exists(value))


def _day_exists(value: str) -> bool:
    """Whether the date a timestamp pattern matched names a real day (no 30 February)."""
    month, day = value[5:7], value[8:10]
    if day > _LAST_DAY[month]:
        return False
    return day != "29" or month != "02" or calendar.isleap(int(value[:4]))


_LAST_DAY = {
    "01": "31",
    "02": "29",
    "03": "31",
    "04": "30",
    "05": "31",
    "06": "30",
    "07": "31",
    "08": "31",
    "09": "30",
    "10": "31",
    "11": "30",
    "12": "31",
}
_UUID = re.compile(UUID_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
