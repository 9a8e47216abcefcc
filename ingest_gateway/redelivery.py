"""Redelivery: a new delivery chain for a webhook the status projector has seen.

A redelivery is an ordinary header-form record on the ingest topic, keyed by the subscription id,
with the webhook's id, its exact body bytes, its received time and metadata, and two more
headers: ``wm-chain`` (one above the chain the webhook's status row is in) and ``wm-chain-start``
(the attempts already made). The agent delivers it like any webhook; its attempts continue the
numbering and its retry ladder counts from the chain start; the projector ranks every event of
the new chain above the old ones (:mod:`status_projector.ordering`), so the status goes back to
PENDING for it while history keeps every attempt. It carries no idempotency marker, so nothing
de-duplicates it.

The source is the ``webhooks`` row (the projector keeps the exact body bytes and metadata there
since migration 0004): it lives as long as the status retention, needs no read of the ingest
topic (whose retention and partition offsets a row would otherwise depend on), and a fan-out
webhook's row holds its own derived id and subscription. Rows written before 0004 have no body
bytes; their JSON payload text (same JSON value, not the same bytes) is sent instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from ingest_gateway.errors import ApiError
from ingest_gateway.producing import produce
from ingest_gateway.state import Gateway
from schemas import records
from schemas.records import MAX_ATTEMPT, MAX_CHAIN, Webhook
from schemas.topics import INGEST
from webhookmaster.retry_ladder import MAX_ATTEMPTS

CHAIN_SPAN = 100_000  # status_projector.ordering.CHAIN_SPAN (components do not import each other)
BATCH = 500  # webhooks read and produced at a time by a bulk redelivery

_COLUMNS = """
    w.id, w.created_at, w.subscription_id, w.event_type, w.payload::text AS payload_text,
    w.body, w.metadata::text AS metadata_text, w.attempt_count, w.progress, w.status
"""
_WINDOW = "w.created_at > now() - $1 * interval '1 millisecond'"
_ONE = f"SELECT {_COLUMNS} FROM webhooks w WHERE {_WINDOW} AND w.id = $2 " + (
    "ORDER BY w.created_at DESC LIMIT 1"
)
_FAILED = f"""
SELECT {_COLUMNS} FROM webhooks w
WHERE {_WINDOW} AND w.subscription_id = $2 AND w.status = 'FAILED'
  AND w.created_at >= $3 AND ($4::timestamptz IS NULL OR w.created_at < $4)
  AND (w.created_at, w.id) > ($5, $6)
ORDER BY w.created_at, w.id LIMIT $7
"""


@dataclass(frozen=True)
class Stored:
    """What the webhooks row holds of a webhook, as a redelivery needs it."""

    id: str
    created_at: datetime
    subscription_id: str | None
    event_type: str | None
    body: bytes | None
    metadata: bytes
    attempt_count: int
    chain: int
    status: str

    @classmethod
    def of(cls, row: asyncpg.Record) -> Stored:
        body = row["body"]
        if body is None and row["payload_text"] is not None:
            body = row["payload_text"].encode()
        sub = row["subscription_id"]
        return cls(
            id=row["id"],
            created_at=row["created_at"],
            subscription_id=None if sub is None else str(sub),
            event_type=row["event_type"],
            body=None if body is None else bytes(body),
            metadata=(row["metadata_text"] or "{}").encode(),
            attempt_count=row["attempt_count"],
            chain=row["progress"] // CHAIN_SPAN,
            status=row["status"],
        )


def new_chain(stored: Stored) -> Webhook:
    """The first record of a new delivery chain for ``stored``; 409 when the webhook lacks what
    a delivery needs, or has used up the attempt or chain numbers."""
    if stored.subscription_id is None or stored.event_type is None or stored.body is None:
        raise ApiError(
            409,
            "not_redeliverable",
            f"webhook {stored.id!r} has no subscription, event type or body on record yet",
        )
    if stored.attempt_count + MAX_ATTEMPTS > MAX_ATTEMPT or stored.chain + 1 > MAX_CHAIN:
        raise ApiError(
            409,
            "not_redeliverable",
            f"webhook {stored.id!r} has reached the most attempts ({MAX_ATTEMPT}) or "
            f"redeliveries ({MAX_CHAIN})",
        )
    return Webhook(
        webhook_id=stored.id,
        subscription_id=stored.subscription_id,
        event_type=stored.event_type,
        body=stored.body,
        received_at=records.iso(stored.created_at),
        metadata=_object_text(stored.metadata),
        attempt=stored.attempt_count,
        chain=stored.chain + 1,
        chain_start=stored.attempt_count,
    )


async def send(gw: Gateway, webhook: Webhook) -> None:
    """Produce ``webhook`` to the ingest topic keyed by its subscription; returns once Kafka
    acknowledged it (503 otherwise, as every gateway write)."""
    assert webhook.subscription_id is not None
    await produce(
        gw, gw.ingest_topic, INGEST, webhook.subscription_id, webhook.body, webhook.headers()
    )


def _object_text(metadata: bytes) -> bytes:
    """``metadata`` when it is a JSON object (as the record header must be), else ``{}``."""
    try:
        return metadata if isinstance(orjson.loads(metadata), dict) else b"{}"
    except orjson.JSONDecodeError:
        return b"{}"


async def find(conn: asyncpg.Connection, retention_ms: int, webhook_id: str) -> Stored | None:
    """The newest webhook with this id within the retention."""
    row = await conn.fetchrow(_ONE, retention_ms, webhook_id)
    return None if row is None else Stored.of(row)


async def failed_in_window(
    pool: asyncpg.Pool,
    retention_ms: int,
    subscription_id: Any,
    since: datetime,
    until: datetime | None,
) -> AsyncIterator[Sequence[Stored]]:
    """The subscription's webhooks received in ``[since, until)`` whose status is FAILED, in
    batches of :data:`BATCH`, oldest first (keyset: no row twice, none skipped)."""
    after: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "")
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                _FAILED, retention_ms, subscription_id, since, until, *after, BATCH
            )
        if not rows:
            return
        batch = [Stored.of(r) for r in rows]
        yield batch
        if len(rows) < BATCH:
            return
        after = (batch[-1].created_at, batch[-1].id)
