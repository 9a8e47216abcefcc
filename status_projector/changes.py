"""Turn topic records into the row changes the projector writes.

Every webhook change carries the order key ``progress`` (see :mod:`status_projector.ordering`),
so the final row is the same whatever order the events arrive in. Every dead letter is also
kept as an event of its own (``dead_letters``), and a record that cannot be read is kept with its
reason (``unprojectable``): nothing consumed vanishes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas import parked, records
from schemas.records import RecordError
from schemas.topics import ATTEMPTS, DEAD_LETTER, DUE, INGEST, PARKED, SUBSCRIPTIONS
from status_projector.ordering import (
    DEAD_LETTER_STEP,
    DELIVERED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    WebhookChange,
    progress,
)

RAW_TEXT_LIMIT = 65_536  # characters of an unprojectable record's value that are kept


@dataclass(frozen=True)
class KafkaRecord:
    """What the projector needs of one consumed record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass
class AttemptRow:
    webhook_id: str
    attempt_id: str
    attempt_number: int
    received_at: datetime
    subscription_id: uuid.UUID
    event_type: str
    target_url: str
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    outcome: str
    next_attempt_at: datetime | None


@dataclass
class SubscriptionChange:
    """An upsert (``row`` set) or a tombstone (``row`` None) of the subscriptions mirror."""

    id: uuid.UUID
    offset: int
    timestamp: datetime
    row: dict[str, Any] | None


@dataclass
class FanOut:
    """A fan-out event (no subscription id): one PENDING webhook per matching subscription."""

    change: WebhookChange  # template; id and subscription_id are filled per subscription


@dataclass
class OrphanDeadLetter:
    """A dead letter naming a webhook but without its record: its row is found by id."""

    change: WebhookChange  # created_at is the fallback (failed_at) when no row exists


@dataclass
class DeadLetterRow:
    """Every dead letter, kept as an event (webhook_id None: an unreadable record's)."""

    partition: int
    offset: int
    failed_at: datetime
    reason: str
    raw: str | None
    source: str  # JSON text
    webhook_id: str | None = None
    subscription_id: uuid.UUID | None = None
    record: str | None = None  # JSON text


@dataclass
class Unprojectable:
    """A record the projector could not read (or PostgreSQL refused), kept with the reason."""

    topic: str
    partition: int
    offset: int
    seen_at: datetime
    reason: str
    raw: str | None


@dataclass
class Batch:
    """The decoded changes of one batch of records, plus what was skipped and why."""

    subscriptions: list[SubscriptionChange] = field(default_factory=list)
    webhooks: list[WebhookChange] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    fanouts: list[FanOut] = field(default_factory=list)
    orphans: list[OrphanDeadLetter] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    unprojectable: list[Unprojectable] = field(default_factory=list)
    # FIFO: (webhook id, the webhook it waits behind, its received_at)
    waiting: list[tuple[str, str, datetime]] = field(default_factory=list)
    projected: Counter[str] = field(default_factory=Counter)  # records by topic suffix
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (suffix, reason)
    newest_ms: int = 0

    def days(self) -> set[datetime]:
        """UTC days (midnight) whose partitions the webhook and attempt rows need."""
        moments = [c.created_at for c in self.webhooks]
        moments += [f.change.created_at for f in self.fanouts]
        moments += [o.change.created_at for o in self.orphans]
        moments += [a.received_at for a in self.attempts]
        return {day_of(m) for m in moments}


def day_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def decode(batch_records: list[KafkaRecord], prefix: str, cutoff: datetime) -> Batch:
    """Decode ``batch_records``; webhooks received before ``cutoff`` (past retention) are
    skipped, as are records that do not match their schema."""
    batch = Batch()
    for rec in batch_records:
        suffix = rec.topic[len(prefix) :] if rec.topic.startswith(prefix) else rec.topic
        batch.newest_ms = max(batch.newest_ms, rec.timestamp_ms)
        decoder = _DECODERS.get(suffix)
        if decoder is None:
            batch.skipped[(suffix, "unknown topic")] += 1
            continue
        try:
            kept = decoder(batch, rec, cutoff)
        except Exception as exc:  # anything a record makes a decoder raise is its own problem
            batch.skipped[(suffix, "invalid")] += 1
            batch.unprojectable.append(unprojectable(rec, f"{type(exc).__name__}: {exc}"))
            continue
        if kept:
            batch.projected[suffix] += 1
        else:
            batch.skipped[(suffix, "expired")] += 1
    return batch


def unprojectable(rec: KafkaRecord, reason: str) -> Unprojectable:
    raw = (
        None
        if rec.value is None
        else rec.value[: RAW_TEXT_LIMIT * 4].decode("utf-8", errors="replace")[:RAW_TEXT_LIMIT]
    )
    return Unprojectable(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        seen_at=datetime.now(UTC),
        reason=reason,
        raw=raw,
    )


def _kafka_time(rec: KafkaRecord) -> datetime:
    return datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC)


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise RecordError("timestamp must be a string")
    moment = records.parse_time(value)
    if moment.tzinfo is None:
        raise RecordError("timestamp without a time zone")
    return moment.astimezone(UTC)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise RecordError("id must be a UUID string")
    return uuid.UUID(value)


def _opt_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else _uuid(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError("expected an integer")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RecordError("expected a string")
    return value


def _object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RecordError("record has no value")
    data = orjson.loads(value)
    if not isinstance(data, dict):
        raise RecordError("value is not a JSON object")
    return data


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _ingest_change(record: records.Webhook, updated: datetime) -> WebhookChange:
    if record.chain_attempt == 0:  # a new webhook, or a resend (its chain's first record)
        status, step, next_retry = PENDING, 0, None
    else:  # handed back by the scheduler: attempt + 1 is due; never resets a later status
        status, step = IN_PROGRESS, 10 * record.attempt - 5
        next_retry = _opt_time(record.due_at)
    return WebhookChange(
        id=record.webhook_id,
        created_at=_time(record.received_at),
        subscription_id=_opt_uuid(record.subscription_id),
        event_type=record.event_type,
        payload=record.body.decode("utf-8", errors="replace"),
        body=record.body,
        metadata=record.metadata.decode("utf-8", errors="replace"),
        status=status,
        progress=progress(status, step, record.chain),
        attempt_count=record.attempt,
        next_retry_at=next_retry,
        updated_at=updated,
        event_id=event_id_of(record),
    )


def event_id_of(record: records.Webhook) -> str | None:
    """The fan-out event a webhook record belongs to: the ``event_id`` of its metadata (the
    gateway's fan-out writes it); None for a webhook ingested for one subscription."""
    if b'"event_id"' not in record.metadata:  # most records: no JSON to read
        return None
    try:
        found = orjson.loads(record.metadata).get("event_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) and 0 < len(found) <= records.MAX_ID_LENGTH else None


def _decode_ingest(batch: Batch, rec: KafkaRecord, cutoff: datetime) -> bool:
    fallback_id = records.derived_id(rec.topic, f"{rec.partition}/{rec.offset}")
    record = records.parse_webhook(
        rec.value, rec.headers, fallback_id, records.iso(_kafka_time(rec)), check_body=False
    )
    change = _ingest_change(record, _time(record.received_at))
    if record.attempt == 0 and records.is_marked(rec.headers):
        change.idempotent = True
    if change.created_at <= cutoff:
        return False
    if change.subscription_id is None:
        batch.fanouts.append(FanOut(change))
    else:
        batch.webhooks.append(change)
    return True


def _decode_attempt(batch: Batch, rec: KafkaRecord, cutoff: datetime) -> bool:
    data = _object(rec.value)
    outcome = data["outcome"]
    number = _int(data["attempt_number"])
    chain = _int(data.get("chain", 0))
    if not 0 <= chain <= records.MAX_CHAIN:
        raise RecordError("bad chain")
    if outcome not in ("delivered", "retrying", "failed") or not 1 <= number <= 1000:
        raise RecordError("bad outcome or attempt_number")
    started = _time(data["started_at"])
    duration = float(data["duration_ms"])
    attempt_id = data.get("attempt_id") or f"n{number}"  # events from before attempt ids
    if not isinstance(attempt_id, str) or len(attempt_id) > 64:
        raise RecordError("attempt_id must be a string of at most 64 characters")
    row = AttemptRow(
        webhook_id=_webhook_id(data["webhook_id"]),
        attempt_id=attempt_id,
        attempt_number=number,
        received_at=_time(data["received_at"]),
        subscription_id=_uuid(data["subscription_id"]),
        event_type=str(data["event_type"]),
        target_url=str(data["target_url"]),
        started_at=started,
        duration_ms=duration,
        status_code=_opt_int(data.get("status_code")),
        error=_opt_str(data.get("error")),
        response_excerpt=_opt_str(data.get("response_excerpt")),
        outcome=outcome,
        next_attempt_at=_opt_time(data.get("next_attempt_at")),
    )
    if row.received_at <= cutoff:
        return False
    finished = started + timedelta(milliseconds=duration)
    status = {"delivered": DELIVERED, "retrying": IN_PROGRESS, "failed": FAILED}[outcome]
    batch.attempts.append(row)
    batch.webhooks.append(
        WebhookChange(
            id=row.webhook_id,
            created_at=row.received_at,
            subscription_id=row.subscription_id,
            event_type=row.event_type,
            status=status,
            progress=progress(status, 10 * number, chain),
            attempt_count=number,
            last_status_code=row.status_code,
            code_from_attempt=True,
            last_error=row.error,
            next_retry_at=row.next_attempt_at if status == IN_PROGRESS else None,
            delivered_at=finished if status == DELIVERED else None,
            updated_at=finished,
        )
    )
    return True


def _decode_dead_letter(batch: Batch, rec: KafkaRecord, cutoff: datetime) -> bool:
    data = _object(rec.value)
    reason = data.get("reason")
    if not isinstance(reason, str):
        raise RecordError("reason must be a string")
    failed_at = _time(data["failed_at"])
    if failed_at <= cutoff:
        return False
    webhook_id = data.get("webhook_id")
    record = data.get("record")
    row = DeadLetterRow(
        partition=rec.partition,
        offset=rec.offset,
        failed_at=failed_at,
        reason=reason,
        raw=_opt_str(data.get("raw")),
        source=_json_text(data.get("source") or {}),
        webhook_id=None if webhook_id is None else _webhook_id(webhook_id),
        subscription_id=_opt_uuid(data.get("subscription_id")),
        record=None if record is None else _json_text(record),
    )
    batch.dead_letters.append(row)
    if row.webhook_id is None:
        return True
    change = WebhookChange(
        id=row.webhook_id,
        created_at=failed_at,
        subscription_id=row.subscription_id,
        status=FAILED,
        progress=progress(FAILED, DEAD_LETTER_STEP),
        last_error=reason,
        updated_at=failed_at,
    )
    parsed = None
    if isinstance(record, dict):
        try:
            parsed = records.webhook_from_json(record, row.webhook_id, records.iso(failed_at))
        except RecordError:
            parsed = None  # the letter is kept; its webhook's row is found by id
    if parsed is not None:
        change.created_at = _time(parsed.received_at)
        change.subscription_id = change.subscription_id or _opt_uuid(parsed.subscription_id)
        change.event_type = parsed.event_type
        change.payload = parsed.body.decode("utf-8", errors="replace")
        change.attempt_count = parsed.attempt
        change.progress = progress(FAILED, DEAD_LETTER_STEP, parsed.chain)
        if change.created_at > cutoff:
            batch.webhooks.append(change)
    else:
        batch.orphans.append(OrphanDeadLetter(change))
    return True


def _decode_subscription(batch: Batch, rec: KafkaRecord, cutoff: datetime) -> bool:
    if rec.value is None:
        if rec.key is None:
            raise RecordError("tombstone without a key")
        batch.subscriptions.append(
            SubscriptionChange(
                id=uuid.UUID(rec.key.decode()),
                offset=rec.offset,
                timestamp=_kafka_time(rec),
                row=None,
            )
        )
        return True
    data = records.parse_subscription(rec.value)
    event_types = data.get("event_types") or []
    if not isinstance(event_types, list) or not all(isinstance(t, str) for t in event_types):
        raise RecordError("event_types must be a list of strings")
    target_url = data["target_url"]
    if not isinstance(target_url, str):
        raise RecordError("target_url must be a string")
    batch.subscriptions.append(
        SubscriptionChange(
            id=uuid.UUID(data["id"]),
            offset=rec.offset,
            timestamp=_kafka_time(rec),
            row={
                "target_url": target_url,
                "event_types": event_types,
                "is_active": bool(data.get("is_active", True)),
                "created_at": _time(data["created_at"]),
                "updated_at": _time(data["updated_at"]),
            },
        )
    )
    return True


def _decode_parked(batch: Batch, rec: KafkaRecord, cutoff: datetime) -> bool:
    """A FIFO queue's enq record names the webhook it waits behind; other records of the parked
    topic change no view."""
    found = dict(rec.headers)
    behind = found.get(parked.WAITING_FOR_HEADER)
    if found.get(parked.OP_HEADER) != b"enq" or not behind:
        return True
    record = records.parse_webhook(
        rec.value, rec.headers, "-", records.iso(_kafka_time(rec)), check_body=False
    )
    created = _time(record.received_at)
    if created <= cutoff:
        return False
    batch.waiting.append((record.webhook_id, _webhook_id(behind.decode()), created))
    return True


def _webhook_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise RecordError("webhook_id must be a non-empty string of at most 200 characters")
    return value


_DECODERS = {
    INGEST: _decode_ingest,
    DUE: _decode_ingest,  # retries handed back by the scheduler
    ATTEMPTS: _decode_attempt,
    DEAD_LETTER: _decode_dead_letter,
    SUBSCRIPTIONS: _decode_subscription,
    PARKED: _decode_parked,
}
