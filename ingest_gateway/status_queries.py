"""The status API's reads of the tables the status projector writes (``webhooks``,
``delivery_attempts``, ``subscriptions``), shaped as the API's status objects.

Rows older than the retention are never returned, even while their partition still exists.
Lists are newest first, keyset-paginated on ``(created_at, id)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from webhookmaster.settings import Settings

CONNECT_TIMEOUT_S = 3.0
QUERY_TIMEOUT_S = 10.0

# A position in the list order: (created_at, id) of a webhook.
Position = tuple[datetime, str]

_COLUMNS = """
    w.id, w.subscription_id, w.event_type, w.payload, w.status, w.attempt_count,
    w.next_retry_at, w.created_at, w.delivered_at, s.target_url AS subscription_url
"""
_FROM = """
FROM webhooks w LEFT JOIN subscriptions s ON s.id = w.subscription_id
WHERE w.created_at > now() - $1 * interval '1 millisecond'
"""
_ATTEMPTS = """
SELECT webhook_id, attempt_number, started_at, status_code, error, outcome, duration_ms,
       target_url
FROM delivery_attempts
WHERE webhook_id = ANY($1::text[]) AND received_at > now() - $2 * interval '1 millisecond'
ORDER BY webhook_id, attempt_number, started_at
"""
_SUBSCRIPTION_EXISTS = "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = $1)"


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A pool on ``settings.db_schema``; min_size=0, so the gateway starts (and the status
    API answers 503) while PostgreSQL is down."""
    return await asyncpg.create_pool(
        settings.dsn,
        min_size=0,
        max_size=10,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=QUERY_TIMEOUT_S,
        init=_init_connection,
        server_settings={"search_path": settings.db_schema, "application_name": "wm-status-api"},
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: v, decoder=orjson.loads, format="text"
    )


async def webhook(
    conn: asyncpg.Connection, retention_ms: int, webhook_id: str
) -> dict[str, Any] | None:
    """The newest webhook with this id within the retention, with its attempts."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} {_FROM} AND w.id = $2 ORDER BY w.created_at DESC LIMIT 1",
        retention_ms,
        webhook_id,
    )
    if row is None:
        return None
    found = (await _with_attempts(conn, [row], retention_ms))[0]
    if found["status"] == "PENDING":  # a FIFO webhook queued behind another one
        behind = await conn.fetchval(_WAITING_FOR, webhook_id)
        if behind is not None:
            found["waiting_for"] = behind
    return found


_WAITING_FOR = "SELECT waiting_for FROM fifo_waiting WHERE webhook_id = $1"


async def subscription_exists(conn: asyncpg.Connection, sub_id: Any) -> bool:
    return bool(await conn.fetchval(_SUBSCRIPTION_EXISTS, sub_id))


async def webhooks(
    conn: asyncpg.Connection,
    retention_ms: int,
    filters: list[tuple[str, Any]],
    limit: int,
    after: Position | None,
) -> tuple[list[dict[str, Any]], Position | None]:
    """Up to ``limit`` webhooks after ``after`` matching ``filters`` (``(clause with {} for the
    parameter, value)`` pairs), and the position of the last one when more follow."""
    args: list[Any] = [retention_ms]
    where = []
    for clause, value in filters:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))
    if after is not None:
        args += [after[0], after[1]]
        where.append(f"(w.created_at, w.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (
        f"SELECT {_COLUMNS} {_FROM} {''.join(' AND ' + w for w in where)} "
        f"ORDER BY w.created_at DESC, w.id DESC LIMIT ${len(args)}"
    )
    rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    last = (rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return await _with_attempts(conn, rows, retention_ms), last


async def _with_attempts(
    conn: asyncpg.Connection, rows: list[asyncpg.Record], retention_ms: int
) -> list[dict[str, Any]]:
    if not rows:
        return []
    attempts: dict[str, list[asyncpg.Record]] = {}
    for a in await conn.fetch(_ATTEMPTS, [r["id"] for r in rows], retention_ms):
        attempts.setdefault(a["webhook_id"], []).append(a)
    return [_status_object(r, attempts.get(r["id"], [])) for r in rows]


def _status_object(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> dict[str, Any]:
    url = row["subscription_url"] or (attempts[-1]["target_url"] if attempts else None)
    return {
        "id": row["id"],
        "subscription": str(row["subscription_id"]) if row["subscription_id"] else None,
        "subscription_url": url,
        "event_type": row["event_type"],
        "payload": row["payload"],
        "status": row["status"],
        "retry_count": max(row["attempt_count"] - 1, 0),
        "next_retry_at": _iso(row["next_retry_at"]),
        "created_at": _iso(row["created_at"]),
        "delivered_at": _iso(row["delivered_at"]),
        "delivery_attempts": [
            {
                "attempt_number": a["attempt_number"],
                "timestamp": _iso(a["started_at"]),
                "status_code": a["status_code"],
                "error_detail": a["error"],
                "is_success": a["outcome"] == "delivered",
                "duration_ms": a["duration_ms"],
            }
            for a in attempts
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
