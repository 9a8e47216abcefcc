"""``GET /api/events/{event_id}/``: a fan-out event and the webhooks it became, read from the
status views. The status projector records each fan-out webhook's ``event_id`` (from its
record's metadata, or the id of a fan-out record it expanded), so an event is found by its own
id -- the gateway's, or the one its producer gave -- however its webhooks were made."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from ingest_gateway.errors import not_found
from ingest_gateway.status_api import POOL, SETTINGS, _handler

_EVENT_WEBHOOKS = """
SELECT id, subscription_id, status, event_type, created_at
FROM webhooks
WHERE event_id = $1 AND created_at > now() - $2 * interval '1 millisecond'
ORDER BY created_at, id
"""


async def event_webhooks(
    conn: asyncpg.Connection, retention_ms: int, event_id: str
) -> dict[str, Any] | None:
    """The event's view, or None when no webhook of it is within the retention."""
    rows = await conn.fetch(_EVENT_WEBHOOKS, event_id, retention_ms)
    if not rows:
        return None
    newest: dict[str, asyncpg.Record] = {}  # a webhook id once (its newest row)
    for row in rows:
        newest[row["id"]] = row
    first = rows[0]
    return {
        "event_id": event_id,
        "event_type": first["event_type"],
        "created_at": _iso(first["created_at"]),
        "webhooks": [
            {
                "id": row["id"],
                "subscription_id": str(row["subscription_id"]) if row["subscription_id"] else None,
                "status": row["status"],
            }
            for row in sorted(newest.values(), key=lambda r: r["id"])
        ],
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@_handler
async def event_status(request: web.Request) -> dict[str, Any]:
    """``GET /api/events/{event_id}/``."""
    event_id = request.match_info["event_id"]
    retention = request.app[SETTINGS].retention_ms
    found = None
    if "\x00" not in event_id:  # PostgreSQL text cannot hold NUL: no event has this id
        async with request.app[POOL].acquire() as conn:
            found = await event_webhooks(conn, retention, event_id)
    if found is None:
        raise not_found(f"no event {event_id!r} in the last {retention // 3_600_000} hours")
    return found
