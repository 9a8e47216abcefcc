"""Record formats on the pipeline's topics, as Python types with their parsers.

A webhook record (ingest and retry topics) carries the body to deliver as its value, byte for
byte, and its metadata in record headers (:class:`Webhook`); producers that cannot set headers
may send the JSON envelope instead (:class:`IngestRecord`), whose ``payload`` member's exact
bytes are delivered. Every other record value is a UTF-8 JSON object. The JSON Schema files
beside this module (``*.schema.json``) describe the JSON formats for outside producers.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from schemas import json_text

# Namespace for ids derived from other ids (fan-out expansion, records produced without an id).
WEBHOOK_NAMESPACE = uuid.UUID("7b0e6a2e-6d6b-4c4e-9a35-2f3c1a9d5e10")

Outcome = Literal["delivered", "retrying", "failed"]


class Status(StrEnum):
    """A webhook's delivery status, as the status projector stores it and the status API
    shows it."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class IngestRecord(TypedDict):
    """The JSON envelope form of a webhook record, for producers that cannot set record
    headers: ``payload`` is the body (its exact bytes are delivered). See :class:`Webhook` for
    the header form, which the gateway and the pipeline produce."""

    webhook_id: NotRequired[str]
    subscription_id: str | None  # None: fan-out to every matching active subscription
    event_type: str
    payload: Any
    received_at: NotRequired[str]  # RFC 3339, UTC
    metadata: NotRequired[dict[str, Any]]
    attempt: NotRequired[int]  # attempts already made (0 or absent on first ingest)
    due_at: NotRequired[str | None]  # when a retry was due (set by the ladder)


class AttemptEvent(TypedDict):
    """One delivery attempt and its outcome, on the attempts topic. Key: the webhook id."""

    webhook_id: str
    attempt_id: NotRequired[str]  # unique per HTTP request (a redone attempt has its own)
    subscription_id: str
    event_type: str
    target_url: str
    attempt_number: int  # 1-based
    started_at: str
    duration_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None  # first 4 KiB of the response body
    outcome: Outcome
    next_attempt_at: str | None
    received_at: str


class DeadLetter(TypedDict):
    """A webhook that failed for good, or a record that could not be read. Key: as the source."""

    reason: str
    failed_at: str
    webhook_id: str | None
    subscription_id: str | None
    record: WebhookJson | None  # the last form of the webhook, when it could be read
    raw: str | None  # the undecodable value as text (replacement chars), when it could not
    source: dict[str, Any]  # topic, partition, offset (and headers) of the record that failed


class SubscriptionRecord(TypedDict):
    """Value of the compacted subscriptions topic (key: the id; a null value deletes it)."""

    id: str
    target_url: str
    # The signing secret as a Fernet token under the newest WM_SECRET_KEYS key
    # (webhookmaster/secret_box.py); an empty secret is encrypted too.
    secret_key_encrypted: str
    # Before secrets were encrypted: the secret in plain text. Still read; the gateway rewrites
    # such records encrypted at start-up. Never written any more.
    secret_key: NotRequired[str]
    event_types: list[str]
    is_active: bool
    created_at: str
    updated_at: str


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
MAX_ID_LENGTH = 200
MAX_EVENT_TYPE_LENGTH = 200


class WebhookJson(TypedDict):
    """A webhook as JSON (inside a dead letter): the body as its exact text."""

    webhook_id: str
    subscription_id: str | None
    event_type: str
    body: str
    received_at: str
    metadata: dict[str, Any]
    attempt: int
    due_at: str | None


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

    def headers(self) -> list[tuple[str, bytes]]:
        """The record headers that carry everything but the body."""
        headers = [(H_EVENT_TYPE, self.event_type.encode()),
                   (H_WEBHOOK_ID, self.webhook_id.encode()),
                   (H_RECEIVED_AT, self.received_at.encode()),
                   (H_METADATA, self.metadata)]
        if self.subscription_id is not None:
            headers.append((H_SUBSCRIPTION_ID, self.subscription_id.encode()))
        if self.attempt:
            headers.append((H_ATTEMPT, str(self.attempt).encode()))
        if self.due_at is not None:
            headers.append((H_DUE_AT, self.due_at.encode()))
        return headers

    def replace(self, **changes: Any) -> Webhook:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> WebhookJson:
        return {"webhook_id": self.webhook_id, "subscription_id": self.subscription_id,
                "event_type": self.event_type,
                "body": self.body.decode("utf-8", errors="replace"),
                "received_at": self.received_at, "metadata": orjson.loads(self.metadata),
                "attempt": self.attempt, "due_at": self.due_at}


# What :func:`event_type_problem` accepts, as a JSON Schema / ECMA regex.
EVENT_TYPE_PATTERN = "^[!-~]([ -~]*[!-~])?$"


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


def parse_webhook(value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None,
                  fallback_id: str | Callable[[], str],
                  fallback_time: str | Callable[[], str], *, check_body: bool = True) -> Webhook:
    """A webhook record in either form (headers, or the JSON envelope). ``fallback_id`` and
    ``fallback_time`` (values, or functions computed only when needed) stand in for the webhook
    id and received time when a direct producer left them out. ``check_body``: refuse a header
    form record whose value is not one JSON document."""
    if value is None:
        raise RecordError("record has no value")
    found = {}
    for name, raw in headers or ():
        if name.startswith("wm-") and name not in found:
            found[name] = raw
    if H_EVENT_TYPE in found:
        return _from_headers(value, found, fallback_id, fallback_time, check_body)
    return _from_envelope(value, fallback_id, fallback_time)


def _header_text(found: dict[str, bytes | None], name: str) -> str | None:
    raw = found.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"header {name} is not UTF-8") from None


def _from_headers(value: bytes, found: dict[str, bytes | None],
                  fallback_id: str | Callable[[], str],
                  fallback_time: str | Callable[[], str], check_body: bool) -> Webhook:
    if check_body:
        try:
            json_text.check(value)
        except json_text.JsonTextError as exc:
            raise RecordError(f"the value is not one JSON document: {exc}") from None
    attempt_text = _header_text(found, H_ATTEMPT)
    try:
        attempt = int(attempt_text) if attempt_text is not None else 0
    except ValueError:
        raise RecordError(f"header {H_ATTEMPT} must be a non-negative integer") from None
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
        event_type=_header_text(found, H_EVENT_TYPE), body=value,
        received_at=_header_text(found, H_RECEIVED_AT) or _value(fallback_time),
        metadata=metadata or b"{}", attempt=attempt, due_at=_header_text(found, H_DUE_AT))


_ENVELOPE_FIELDS = frozenset(IngestRecord.__annotations__)


def _from_envelope(value: bytes, fallback_id: str | Callable[[], str],
                   fallback_time: str | Callable[[], str]) -> Webhook:
    try:
        members = json_text.members(value)
    except json_text.NotAnObject:
        raise RecordError("value is not a JSON object") from None
    except json_text.JsonTextError as exc:
        raise RecordError(f"value is not JSON: {exc}") from None
    unknown = set(members) - _ENVELOPE_FIELDS
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "payload" not in members:
        raise RecordError("missing field: payload")
    data = {name: json_text.value(raw) for name, raw in members.items() if name != "payload"}
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise RecordError("metadata must be an object")
    attempt = data.get("attempt", 0)
    if isinstance(attempt, float) and attempt.is_integer():
        attempt = int(attempt)
    return _checked(
        webhook_id=data["webhook_id"] if "webhook_id" in data else _value(fallback_id),
        subscription_id=data.get("subscription_id"), event_type=data.get("event_type"),
        body=members["payload"],
        received_at=data["received_at"] if "received_at" in data else _value(fallback_time),
        metadata=members["metadata"] if "metadata" in members else b"{}", attempt=attempt,
        due_at=data.get("due_at"))


def _checked(*, webhook_id: Any, subscription_id: Any, event_type: Any, body: bytes,
             received_at: Any, metadata: bytes, attempt: Any, due_at: Any) -> Webhook:
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
    return Webhook(webhook_id=webhook_id, subscription_id=subscription_id,
                   event_type=event_type, body=body, received_at=received_at,
                   metadata=metadata, attempt=attempt, due_at=due_at)


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
        subscription_id=data.get("subscription_id"), event_type=data.get("event_type"),
        body=body.encode(), received_at=data.get("received_at", fallback_time),
        metadata=orjson.dumps(metadata), attempt=data.get("attempt", 0),
        due_at=data.get("due_at"))


def parse_subscription(value: bytes) -> SubscriptionRecord:
    data = orjson.loads(value)
    if not isinstance(data, dict) or not _is_uuid(data.get("id")):
        raise RecordError("subscription record needs an id")
    return data  # type: ignore[return-value]




def _value(given: str | Callable[[], str]) -> str:
    return given() if callable(given) else given


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_time(value: str) -> bool:
    try:
        moment = parse_time(value.upper())
    except ValueError:
        return False
    return moment.tzinfo is not None
