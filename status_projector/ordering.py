"""The order rules of a webhooks row, in one place: the order key of a status change, the upsert
that applies it in PostgreSQL, and :func:`fold`, which applies the same rules in Python.

Every change to a webhook's status carries an order key, ``progress``: first its delivery
chain (0 for the first delivery, one more per resend: :data:`CHAIN_SPAN` per chain), then within
a chain DELIVERED above FAILED above every non-final status, then how far along the webhook the
event is (ingest 0, a retry handed back before attempt k ``10k - 5``, attempt n ``10n``, dead
letter 1000). The upsert applies an event's status fields only when its key is at least the
stored one, so the final row is the same whatever order the events arrive in (late, replayed, or
from topics read at different speeds): within a chain a webhook never leaves DELIVERED, and never
leaves FAILED for a non-final status; only a newer chain (a resend) takes it back to PENDING.
Replaying any change changes nothing (same key, same values). The stored key's chain is
``progress // CHAIN_SPAN`` (:func:`chain_of`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from schemas.records import Status

PENDING, IN_PROGRESS, DELIVERED, FAILED = (
    Status.PENDING,
    Status.IN_PROGRESS,
    Status.DELIVERED,
    Status.FAILED,
)
TERMINAL = 10_000
DEAD_LETTER_STEP = 1_000
RANK: dict[str, int] = {PENDING: 0, IN_PROGRESS: 0, FAILED: TERMINAL, DELIVERED: 2 * TERMINAL}
# Keys of one chain stay below 3 * TERMINAL (steps: at most 10 * MAX_ATTEMPT), so every key of
# chain c + 1 ranks above every key of chain c; MAX_CHAIN chains fit PostgreSQL's integer.
CHAIN_SPAN = 100_000


def progress(status: str, step: int, chain: int = 0) -> int:
    """Order key of an event: its chain first, then DELIVERED above FAILED, both above every
    other status, then ``step``."""
    return chain * CHAIN_SPAN + RANK[status] + step


def chain_of(key: int) -> int:
    """The delivery chain of an order key."""
    return key // CHAIN_SPAN


@dataclass(kw_only=True)
class WebhookChange:
    """One upsert of a webhooks row (columns as in the table)."""

    id: str
    created_at: datetime
    subscription_id: uuid.UUID | None
    status: str
    progress: int
    updated_at: datetime
    event_type: str | None = None
    payload: str | None = None  # JSON text
    attempt_count: int = 0
    last_status_code: int | None = None
    code_from_attempt: bool = False  # last_status_code counts (an attempt event)
    last_error: str | None = None
    next_retry_at: datetime | None = None
    delivered_at: datetime | None = None
    body: bytes | None = None  # the exact body bytes (ingest and retry records only)
    metadata: str | None = None  # the ingest metadata, JSON text
    event_id: str | None = None  # the fan-out event the webhook came from
    # a marked first attempt or a fan-out's webhook: a later copy of its id (an event or
    # Idempotency-Key sent again, which the agents drop) adds no row (upserts.without_copies)
    idempotent: bool = False


UPSERT_WEBHOOK = """
INSERT INTO webhooks AS w (id, created_at, subscription_id, event_type, payload, status, progress,
                           attempt_count, last_status_code, last_error, next_retry_at,
                           delivered_at, updated_at, body, metadata, event_id)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $11, $12, $13, $14, $15, $16::jsonb, $17)
ON CONFLICT (id, created_at) DO UPDATE SET
    subscription_id = COALESCE(w.subscription_id, EXCLUDED.subscription_id),
    body = COALESCE(w.body, EXCLUDED.body),
    metadata = COALESCE(w.metadata, EXCLUDED.metadata),
    event_id = COALESCE(w.event_id, EXCLUDED.event_id),
    event_type = COALESCE(w.event_type, EXCLUDED.event_type),
    payload = COALESCE(w.payload, EXCLUDED.payload),
    status = CASE WHEN EXCLUDED.progress >= w.progress THEN EXCLUDED.status ELSE w.status END,
    last_error = CASE WHEN EXCLUDED.progress >= w.progress
                      THEN EXCLUDED.last_error ELSE w.last_error END,
    next_retry_at = CASE WHEN EXCLUDED.progress >= w.progress
                         THEN EXCLUDED.next_retry_at ELSE w.next_retry_at END,
    delivered_at = CASE WHEN EXCLUDED.progress >= w.progress
                        THEN EXCLUDED.delivered_at ELSE w.delivered_at END,
    progress = GREATEST(w.progress, EXCLUDED.progress),
    last_status_code = CASE WHEN $10::boolean AND EXCLUDED.attempt_count >= w.attempt_count
                            THEN EXCLUDED.last_status_code ELSE w.last_status_code END,
    attempt_count = GREATEST(w.attempt_count, EXCLUDED.attempt_count),
    updated_at = GREATEST(w.updated_at, EXCLUDED.updated_at)
"""


def webhook_args(c: WebhookChange) -> tuple[Any, ...]:
    return (
        c.id,
        c.created_at,
        c.subscription_id,
        c.event_type,
        c.payload,
        c.status,
        c.progress,
        c.attempt_count,
        c.last_status_code,
        c.code_from_attempt,
        c.last_error,
        c.next_retry_at,
        c.delivered_at,
        c.updated_at,
        c.body,
        c.metadata,
        c.event_id,
    )


def fold(changes: list[WebhookChange]) -> list[WebhookChange]:
    """Combine consecutive changes of the same row (``changes`` sorted by row key) into one,
    where the combination is exactly what upserting both in order leaves; otherwise keep them
    apart. Fewer upserts for the common batch that holds a webhook's ingest record and its
    attempt events."""
    out: list[WebhookChange] = []
    for change in changes:
        last = out[-1] if out else None
        if last is not None and (last.id, last.created_at) == (change.id, change.created_at):
            merged = _fold_pair(last, change)
            if merged is not None:
                out[-1] = merged
                continue
        out.append(change)
    return out


def _fold_pair(a: WebhookChange, b: WebhookChange) -> WebhookChange | None:
    """``a`` then ``b`` as one change (the UPSERT_WEBHOOK rules applied to each other), or None
    when the status-code rule cannot be kept in one change: a change without an attempt's code
    that saw more attempts than the one with the code."""
    if a.code_from_attempt and b.code_from_attempt:
        code_src = b if b.attempt_count >= a.attempt_count else a
    elif a.code_from_attempt or b.code_from_attempt:
        code_src, other = (a, b) if a.code_from_attempt else (b, a)
        if other.attempt_count > code_src.attempt_count:
            return None
    else:  # neither is an attempt: only an insert stores a code, and a comes first
        code_src = a
    status_src = b if b.progress >= a.progress else a
    return replace(
        b,
        subscription_id=a.subscription_id if a.subscription_id is not None else b.subscription_id,
        event_type=a.event_type if a.event_type is not None else b.event_type,
        payload=a.payload if a.payload is not None else b.payload,
        body=a.body if a.body is not None else b.body,
        metadata=a.metadata if a.metadata is not None else b.metadata,
        event_id=a.event_id if a.event_id is not None else b.event_id,
        status=status_src.status,
        last_error=status_src.last_error,
        next_retry_at=status_src.next_retry_at,
        delivered_at=status_src.delivered_at,
        progress=max(a.progress, b.progress),
        last_status_code=code_src.last_status_code,
        code_from_attempt=a.code_from_attempt or b.code_from_attempt,
        attempt_count=max(a.attempt_count, b.attempt_count),
        updated_at=max(a.updated_at, b.updated_at),
    )
