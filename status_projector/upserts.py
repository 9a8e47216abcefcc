"""The SQL the projector writes with: idempotent, order-safe upserts, one transaction a batch.

Replaying any record changes nothing (same key, same values); an older event after a newer one
leaves the newer state (the webhooks row's rules live in :mod:`status_projector.ordering`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from dataclasses import replace
from typing import Any

import asyncpg

from schemas import records
from status_projector.changes import AttemptRow, Batch, SubscriptionChange
from status_projector.ordering import UPSERT_WEBHOOK, WebhookChange, fold, webhook_args

log = logging.getLogger(__name__)

INSERT_ATTEMPTS = """
INSERT INTO delivery_attempts (webhook_id, attempt_id, attempt_number, received_at,
                               subscription_id, event_type, target_url, started_at, duration_ms,
                               status_code, error, response_excerpt, outcome, next_attempt_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::timestamptz[], $5::uuid[],
                     $6::text[], $7::text[], $8::timestamptz[], $9::float8[], $10::integer[],
                     $11::text[], $12::text[], $13::text[], $14::timestamptz[])
ON CONFLICT (webhook_id, attempt_id, received_at) DO NOTHING
"""  # one statement a batch; every request is its own row (a replayed event changes nothing)

UPSERT_SUBSCRIPTION = """
INSERT INTO subscriptions AS s (id, target_url, event_types, is_active, created_at, updated_at,
                                deleted_at, source_offset)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)
ON CONFLICT (id) DO UPDATE SET
    target_url = EXCLUDED.target_url, event_types = EXCLUDED.event_types,
    is_active = EXCLUDED.is_active, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, deleted_at = NULL, source_offset = EXCLUDED.source_offset
WHERE EXCLUDED.source_offset >= s.source_offset
"""

DELETE_SUBSCRIPTION = """
UPDATE subscriptions SET deleted_at = $2, source_offset = $3
WHERE id = $1 AND source_offset <= $3
"""  # a tombstone for an id never seen has nothing to mark

INSERT_DEAD_LETTER = """
INSERT INTO dead_letters (dl_partition, dl_offset, failed_at, reason, raw, source, webhook_id,
                          subscription_id, record)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9::jsonb)
ON CONFLICT (dl_partition, dl_offset) DO NOTHING
"""

INSERT_UNPROJECTABLE = """
INSERT INTO unprojectable (topic, partition, record_offset, seen_at, reason, raw)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (topic, partition, record_offset) DO NOTHING
"""

MATCHING_SUBSCRIPTIONS = """
SELECT id FROM subscriptions
WHERE deleted_at IS NULL AND is_active AND (event_types = '{}' OR $1 = ANY(event_types))
"""

CREATED_AT_BY_ID = """
SELECT DISTINCT ON (id) id, created_at FROM webhooks WHERE id = ANY($1::text[])
ORDER BY id, created_at DESC
"""


def _attempt_rows(attempts: list[AttemptRow]) -> list[tuple[Any, ...]]:
    """One row per attempt id (one statement cannot insert a key twice), in key order (rows
    lock in the same order everywhere)."""
    unique = {(a.webhook_id, a.attempt_id, a.received_at): a for a in attempts}
    return [
        (
            a.webhook_id,
            a.attempt_id,
            a.attempt_number,
            a.received_at,
            a.subscription_id,
            a.event_type,
            a.target_url,
            a.started_at,
            a.duration_ms,
            a.status_code,
            a.error,
            a.response_excerpt,
            a.outcome,
            a.next_attempt_at,
        )
        for _, a in sorted(unique.items(), key=lambda item: item[0])
    ]


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column (the arguments of an ``unnest`` insert)."""
    return [list(column) for column in zip(*rows, strict=True)]


def _subscription_args(c: SubscriptionChange) -> tuple[Any, ...]:
    assert c.row is not None
    r = c.row
    return (
        c.id,
        r["target_url"],
        r["event_types"],
        r["is_active"],
        r["created_at"],
        r["updated_at"],
        c.offset,
    )


async def expand(conn: asyncpg.Connection, batch: Batch) -> list[WebhookChange]:
    """Webhook changes that need the database: fan-out events become one webhook per matching
    active subscription (ids as the delivery agent derives them, the event's id recorded as
    their event_id), dead letters without their
    record find their webhook's row by id."""
    changes: list[WebhookChange] = []
    for fan in batch.fanouts:
        template = fan.change
        for row in await conn.fetch(MATCHING_SUBSCRIPTIONS, template.event_type):
            sub_id = row["id"]
            changes.append(
                replace(
                    template,
                    id=records.derived_id(template.id, str(sub_id)),
                    subscription_id=sub_id,
                    event_id=template.event_id or template.id,
                    idempotent=True,
                )
            )
    if batch.orphans:
        ids = [o.change.id for o in batch.orphans]
        found = {r["id"]: r["created_at"] for r in await conn.fetch(CREATED_AT_BY_ID, ids)}
        for orphan in batch.orphans:
            created = found.get(orphan.change.id, orphan.change.created_at)
            changes.append(replace(orphan.change, created_at=created))
    return changes


FIRST_CREATED_AT = """
SELECT id, min(created_at) AS first FROM webhooks WHERE id = ANY($1::text[]) GROUP BY id
"""


async def without_copies(
    conn: asyncpg.Connection, changes: list[WebhookChange]
) -> list[WebhookChange]:
    """``changes`` less the copies of idempotent webhooks: a marked first attempt (or a
    fan-out's webhook) whose id already has a row, or an earlier change in this batch, from an
    earlier time. The agents deliver only the first (delivery_agents/dedupe.py); a row for the
    copy would stay PENDING."""
    marked = {c.id for c in changes if c.idempotent}
    if not marked:
        return changes
    first = {row["id"]: row["first"] for row in await conn.fetch(FIRST_CREATED_AT, sorted(marked))}
    for c in changes:
        if c.idempotent and (c.id not in first or c.created_at < first[c.id]):
            first[c.id] = c.created_at
    return [c for c in changes if not c.idempotent or c.created_at <= first[c.id]]


INSERT_WAITING = """
INSERT INTO fifo_waiting (webhook_id, waiting_for, created_at) VALUES ($1, $2, $3)
ON CONFLICT (webhook_id) DO NOTHING
"""


async def write(conn: asyncpg.Connection, batch: Batch) -> None:
    """Write every change of ``batch`` (inside the caller's transaction)."""
    for sub in batch.subscriptions:  # in offset order; before fan-out reads the mirror
        if sub.row is None:
            await conn.execute(DELETE_SUBSCRIPTION, sub.id, sub.timestamp, sub.offset)
        else:
            await conn.execute(UPSERT_SUBSCRIPTION, *_subscription_args(sub))
    # Rows in key order: two projectors writing the same rows lock them in the same order (no
    # deadlock). The upserts commute, so the order of one row's events does not matter.
    webhooks = fold(
        sorted(
            await without_copies(conn, batch.webhooks + await expand(conn, batch)),
            key=lambda c: (c.id, c.created_at, c.progress),
        )
    )
    if webhooks:
        await conn.executemany(UPSERT_WEBHOOK, [webhook_args(c) for c in webhooks])
    if batch.waiting:
        await conn.executemany(INSERT_WAITING, sorted(batch.waiting))
    if batch.attempts:
        await conn.execute(INSERT_ATTEMPTS, *_columns(_attempt_rows(batch.attempts)))
    if batch.dead_letters:
        await conn.executemany(
            INSERT_DEAD_LETTER,
            [
                (
                    d.partition,
                    d.offset,
                    d.failed_at,
                    d.reason,
                    d.raw,
                    d.source,
                    d.webhook_id,
                    d.subscription_id,
                    d.record,
                )
                for d in batch.dead_letters
            ],
        )
    if batch.unprojectable:
        await conn.executemany(
            INSERT_UNPROJECTABLE,
            [
                (u.topic, u.partition, u.offset, u.seen_at, u.reason, u.raw)
                for u in batch.unprojectable
            ],
        )


def split(batch: Batch) -> list[Batch]:
    """One batch per change, to find the change PostgreSQL refuses."""
    singles: list[Batch] = []
    for name in KINDS:
        for item in getattr(batch, name):
            single = Batch()
            getattr(single, name).append(item)
            singles.append(single)
    return singles


async def write_skipping_bad(conn: asyncpg.Connection, batch: Batch) -> Counter[str]:
    """Write ``batch`` change by change, each in a savepoint. A change PostgreSQL refuses as a
    data error is tried once more with NUL characters replaced (text and jsonb cannot hold
    them), then skipped; returns what was skipped, by kind."""
    skipped: Counter[str] = Counter()
    for single in split(batch):
        for attempt in (single, sanitized(single), without_payload(single)):
            try:
                async with conn.transaction():
                    await write(conn, attempt)
                break
            except DATA_ERRORS as exc:
                error = exc
        else:
            kind = next(n for n in KINDS if getattr(single, n))
            log.error("skipping a %s change PostgreSQL refuses: %s", kind, error)
            skipped[kind] += 1
    return skipped


KINDS = (
    "subscriptions",
    "webhooks",
    "attempts",
    "fanouts",
    "orphans",
    "dead_letters",
    "unprojectable",
)
NUL = "\x00"
JSON_TEXT = frozenset({"payload", "metadata", "source", "record"})  # fields that hold JSON text
# A \u0000 escape (after an even number of backslashes) in JSON text: jsonb refuses it.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _clean(value: Any) -> Any:
    """``value`` with NUL characters replaced by U+FFFD in every string (keys included)."""
    if isinstance(value, str):
        return value.replace(NUL, "\ufffd")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def sanitized(batch: Batch) -> Batch:
    """A copy of ``batch`` (one change) without NUL characters in its text and JSON."""

    def fix(item: Any) -> Any:
        fields = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
        for name, value in fields.items():
            if name in JSON_TEXT and isinstance(value, str):
                fields[name] = _NUL_ESCAPE.sub(r"\1\\ufffd", value.replace(NUL, "\ufffd"))
            elif isinstance(value, str | list | dict):
                fields[name] = _clean(value)
            elif isinstance(value, WebhookChange):
                fields[name] = fix(value)
        return type(item)(**fields)

    clean = Batch()
    for name in KINDS:
        getattr(clean, name).extend(fix(item) for item in getattr(batch, name))
    return clean


def without_payload(batch: Batch) -> Batch:
    """A copy of ``batch`` (one change) whose webhook keeps no payload: the status row matters
    more than a payload PostgreSQL cannot store (the delivered bytes are unaffected)."""
    bare = sanitized(batch)
    bare.webhooks = [replace(c, payload=None, metadata=None) for c in bare.webhooks]
    bare.fanouts = [
        replace(f, change=replace(f.change, payload=None, metadata=None)) for f in bare.fanouts
    ]
    bare.dead_letters = [replace(d, record=None) for d in bare.dead_letters]
    return bare


# Errors caused by a record's content (SQLSTATE classes 22, 23 and 54): retrying cannot help.
DATA_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
