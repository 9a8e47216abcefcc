"""Dead letters as the status projector keeps them (``dead_letters``): listed with filters and
keyset pages, and redriven as new delivery chains (:mod:`ingest_gateway.redelivery`).

A dead letter with a readable webhook (``record``) can be redriven: from the webhook's status
row when it still has one (the exact body bytes, the chain it is in), else from the letter's own
record (the body as the letter kept it, as text). An unreadable record's letter (no webhook id,
only ``raw`` text) cannot: there is no webhook to send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ingest_gateway.errors import ApiError
from ingest_gateway.redelivery import find, new_chain
from schemas import records
from schemas.records import MAX_ATTEMPT, MAX_CHAIN, RecordError, Webhook
from webhookmaster.retry_ladder import MAX_ATTEMPTS

BATCH = 500

_COLUMNS = """
    d.id, d.failed_at, d.reason, d.webhook_id, d.subscription_id, d.record, d.raw, d.source,
    d.redriven_at
"""


@dataclass(frozen=True)
class Filter:
    """Which dead letters: each field narrows (None: any)."""

    subscription_id: Any = None
    reason: str | None = None  # the reason contains this text
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before
    ids: Sequence[int] | None = None

    def where(self, args: list[Any]) -> str:
        """The SQL conditions (``d.``) with their parameters appended to ``args``."""
        clauses = ["true"]

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if self.subscription_id is not None:
            clauses.append(f"d.subscription_id = {param(self.subscription_id)}")
        if self.reason:
            clauses.append(f"strpos(d.reason, {param(self.reason)}) > 0")
        if self.since is not None:
            clauses.append(f"d.failed_at >= {param(self.since)}")
        if self.until is not None:
            clauses.append(f"d.failed_at < {param(self.until)}")
        if self.ids is not None:
            clauses.append(f"d.id = ANY({param(list(self.ids))}::bigint[])")
        return " AND ".join(clauses)


def view(row: asyncpg.Record) -> dict[str, Any]:
    """A dead letter as the API shows it."""
    return {
        "id": row["id"],
        "failed_at": _iso(row["failed_at"]),
        "reason": row["reason"],
        "webhook_id": row["webhook_id"],
        "subscription_id": None if row["subscription_id"] is None else str(row["subscription_id"]),
        "record": row["record"],
        "raw": row["raw"],
        "source": row["source"],
        "redrivable": redrivable(row),
        "redriven_at": _iso(row["redriven_at"]),
    }


def redrivable(row: asyncpg.Record) -> bool:
    return row["webhook_id"] is not None and isinstance(row["record"], dict)


async def page(
    conn: asyncpg.Connection, where: Filter, limit: int, after: tuple[datetime, int] | None
) -> tuple[list[dict[str, Any]], tuple[datetime, int] | None]:
    """Up to ``limit`` letters newest first after ``after``, and the position of the last one
    when more follow."""
    args: list[Any] = []
    sql = f"SELECT {_COLUMNS} FROM dead_letters d WHERE {where.where(args)}"
    if after is not None:
        args += list(after)
        sql += f" AND (d.failed_at, d.id) < (${len(args) - 1}, ${len(args)})"
    args.append(limit + 1)
    sql += f" ORDER BY d.failed_at DESC, d.id DESC LIMIT ${len(args)}"
    rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    last = (rows[-1]["failed_at"], rows[-1]["id"]) if more else None
    return [view(r) for r in rows], last


async def matching(pool: asyncpg.Pool, where: Filter) -> AsyncIterator[Sequence[asyncpg.Record]]:
    """Every letter ``where`` selects, oldest first, in batches (keyset on the id)."""
    after = 0
    while True:
        args: list[Any] = []
        conditions = where.where(args)
        args += [after, BATCH]
        sql = (
            f"SELECT {_COLUMNS} FROM dead_letters d WHERE {conditions} "
            f"AND d.id > ${len(args) - 1} ORDER BY d.id LIMIT ${len(args)}"
        )
        async with pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        if not rows:
            return
        yield rows
        if len(rows) < BATCH:
            return
        after = rows[-1]["id"]


async def chain_for(conn: asyncpg.Connection, retention_ms: int, row: asyncpg.Record) -> Webhook:
    """The new delivery chain that redrives the letter ``row`` (a redrivable one); 409 when
    there is nothing it could send."""
    stored = await find(conn, retention_ms, row["webhook_id"])
    if stored is not None and stored.subscription_id is not None:
        return new_chain(stored)
    try:
        letter = records.webhook_from_json(
            row["record"], row["webhook_id"], records.iso(row["failed_at"])
        )
    except RecordError as exc:
        raise ApiError(409, "not_redrivable", f"dead letter {row['id']}: {exc}") from None
    if letter.subscription_id is None:
        raise ApiError(409, "not_redrivable", f"dead letter {row['id']} names no subscription")
    if letter.attempt + MAX_ATTEMPTS > MAX_ATTEMPT or letter.chain + 1 > MAX_CHAIN:
        raise ApiError(409, "not_redrivable", f"dead letter {row['id']}: attempts used up")
    return letter.replace(
        attempt=letter.attempt,
        chain=letter.chain + 1,
        chain_start=letter.attempt,
        due_at=None,
        traceparent=None,
    )


async def missing(conn: asyncpg.Connection, ids: Sequence[int]) -> list[int]:
    """Which of ``ids`` name no dead letter."""
    found = await conn.fetch("SELECT id FROM dead_letters WHERE id = ANY($1::bigint[])", list(ids))
    return sorted(set(ids) - {r["id"] for r in found})


async def mark_redriven(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE dead_letters SET redriven_at = now() WHERE id = ANY($1::bigint[])", list(ids)
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else records.iso(moment.astimezone(UTC))
