"""Record formats on the pipeline's topics, as Python types with their parsers.

Every record value is a UTF-8 JSON object. The JSON Schema files beside this module
(``*.schema.json``) describe the same formats for outside producers; ``tests/test_schemas.py``
keeps the two in step.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

import orjson

# Namespace for ids derived from other ids (fan-out expansion, records produced without an id).
WEBHOOK_NAMESPACE = uuid.UUID("7b0e6a2e-6d6b-4c4e-9a35-2f3c1a9d5e10")

Outcome = Literal["delivered", "retrying", "failed"]


class IngestRecord(TypedDict):
    """A webhook to deliver, on the ingest topic (and, with ``attempt`` > 0, handed back by the
    retry scheduler). Key: the subscription id, or the webhook id for a fan-out event."""

    webhook_id: str
    subscription_id: str | None  # None: fan-out to every matching active subscription
    event_type: str
    payload: Any
    received_at: str  # RFC 3339, UTC
    metadata: dict[str, Any]  # source, remote address, content type, idempotency key, …
    attempt: NotRequired[int]  # attempts already made (0 or absent on first ingest)
    due_at: NotRequired[str | None]  # when a retry was due (set by the ladder)


class AttemptEvent(TypedDict):
    """One delivery attempt and its outcome, on the attempts topic. Key: the webhook id."""

    webhook_id: str
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
    record: IngestRecord | None  # the last form of the webhook, when it could be read
    raw: str | None  # the undecodable value as text (replacement chars), when it could not
    source: dict[str, Any]  # topic, partition, offset of the record that failed


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
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def derived_id(parent: str, child: str) -> str:
    """A stable id derived from two others (fan-out: the event id and the subscription id)."""
    return str(uuid.uuid5(WEBHOOK_NAMESPACE, f"{parent}/{child}"))


def dumps(record: Any) -> bytes:
    return orjson.dumps(record)


def parse_ingest(value: bytes | None, fallback_id: str | Callable[[], str],
                 fallback_time: str | Callable[[], str]) -> IngestRecord:
    """Validate an ingest record. ``fallback_id`` and ``fallback_time`` (values, or functions
    computed only when needed) stand in for ``webhook_id`` and ``received_at`` when a direct
    producer left them out."""
    if value is None:
        raise RecordError("record has no value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"value is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError("value is not a JSON object")
    unknown = set(data) - _INGEST_FIELDS
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "payload" not in data:
        raise RecordError("missing field: payload")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise RecordError("event_type must be a non-empty string")
    sub = data.get("subscription_id")
    if sub is not None and not _is_uuid(sub):
        raise RecordError("subscription_id must be a UUID string or null")
    webhook_id = data["webhook_id"] if "webhook_id" in data else _value(fallback_id)
    if not isinstance(webhook_id, str) or not webhook_id or len(webhook_id) > 200:
        raise RecordError("webhook_id must be a non-empty string of at most 200 characters")
    received_at = data["received_at"] if "received_at" in data else _value(fallback_time)
    if not isinstance(received_at, str) or not _is_time(received_at):
        raise RecordError("received_at must be an RFC 3339 timestamp")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise RecordError("metadata must be an object")
    attempt = data.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise RecordError("attempt must be a non-negative integer")
    record: IngestRecord = {
        "webhook_id": webhook_id, "subscription_id": sub, "event_type": event_type,
        "payload": data["payload"], "received_at": received_at, "metadata": metadata,
        "attempt": attempt, "due_at": data.get("due_at"),
    }
    return record


def parse_subscription(value: bytes) -> SubscriptionRecord:
    data = orjson.loads(value)
    if not isinstance(data, dict) or not _is_uuid(data.get("id")):
        raise RecordError("subscription record needs an id")
    return data  # type: ignore[return-value]


_INGEST_FIELDS = set(IngestRecord.__annotations__)


def _value(given: str | Callable[[], str]) -> str:
    return given() if callable(given) else given


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_time(value: str) -> bool:
    try:
        moment = parse_time(value)
    except ValueError:
        return False
    return moment.tzinfo is not None
