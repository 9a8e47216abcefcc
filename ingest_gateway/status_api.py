"""The status API: what happened to a webhook, a subscription's history, webhook search.

It reads the tables the status projector writes (``webhooks``, ``delivery_attempts``,
``subscriptions``) through an asyncpg pool whose connections use ``settings.db_schema``. Rows
older than the retention (72 h) are never served, even while their partition still exists.
Lists are newest first with keyset pagination on ``(created_at, id)``; the cursor is opaque.
Errors are JSON ``{"error", "detail"[, "field"]}``; PostgreSQL unreachable is 503 with
Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from schemas.records import Status
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

POOL = web.AppKey("status_pool", asyncpg.Pool)
SETTINGS = web.AppKey("status_settings", Settings)

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
STATUSES = tuple(Status)
RETRY_AFTER_S = "5"
CONNECT_TIMEOUT_S = 3.0
QUERY_TIMEOUT_S = 10.0

# PostgreSQL cannot answer: the request may be retried later.
DB_DOWN = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
           asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
           asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)

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


class StatusApiError(Exception):
    """An error answer of the status API."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.field, self.headers = field, headers

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return _json(body, self.status, self.headers)


def setup(app: web.Application, settings: Settings) -> None:
    """Register the status routes and the asyncpg pool (created and closed with the app)."""
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_pool_context)
    app.router.add_get("/api/status/{webhook_id}/", _handler(webhook_status))
    app.router.add_get("/api/subscriptions/{id}/history/", _handler(subscription_history))
    app.router.add_get("/api/webhooks/", _handler(list_webhooks))


async def _pool_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # min_size=0: the gateway starts (and answers 503 here) while PostgreSQL is down.
    app[POOL] = await asyncpg.create_pool(
        settings.dsn, min_size=0, max_size=10, timeout=CONNECT_TIMEOUT_S,
        command_timeout=QUERY_TIMEOUT_S, init=_init_connection,
        server_settings={"search_path": settings.db_schema,
                         "application_name": "wm-status-api"})
    try:
        yield
    finally:
        await app[POOL].close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=lambda v: v,
                              decoder=orjson.loads, format="text")


Handler = Callable[[web.Request], Awaitable[Any]]


def _handler(fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            return _json(await fn(request))
        except StatusApiError as exc:
            return exc.response()
        except DB_DOWN as exc:
            log.warning("status API: PostgreSQL unavailable: %s: %s", type(exc).__name__, exc)
            return StatusApiError(503, "database_unavailable",
                                  "the status database is unavailable; retry later",
                                  headers={"Retry-After": RETRY_AFTER_S}).response()
        except asyncpg.PostgresError:
            log.exception("status API: query failed in %s", request.path)
            return StatusApiError(500, "internal_error", "internal server error").response()
    return handle


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json")


def _bad(field: str, detail: str) -> StatusApiError:
    return StatusApiError(400, "validation_error", detail, field=field)


# --- handlers ---------------------------------------------------------------------------------

async def webhook_status(request: web.Request) -> dict[str, Any]:
    """``GET /api/status/{webhook_id}/``: one webhook with its attempts."""
    webhook_id = request.match_info["webhook_id"]
    retention = request.app[SETTINGS].retention_ms
    if "\x00" in webhook_id:  # PostgreSQL text cannot hold NUL: no webhook has this id
        raise StatusApiError(404, "not_found", f"no webhook {webhook_id!r}")
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} {_FROM} AND w.id = $2 ORDER BY w.created_at DESC LIMIT 1",
            retention, webhook_id)
        if row is None:
            raise StatusApiError(404, "not_found", f"no webhook {webhook_id!r} in the last "
                                 f"{retention // 3_600_000} hours")
        return (await _with_attempts(conn, [row], retention))[0]


async def subscription_history(request: web.Request) -> dict[str, Any]:
    """``GET /api/subscriptions/{id}/history/``: the subscription's webhooks, newest first."""
    sub_id = _uuid(request.match_info["id"], "id")
    limit, cursor = _page(request)
    async with request.app[POOL].acquire() as conn:
        page = await _list(conn, request.app[SETTINGS].retention_ms,
                           [("w.subscription_id = {}", sub_id)], limit, cursor)
        if not page["items"] and cursor is None and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = $1)", sub_id):
            raise StatusApiError(404, "not_found", f"no subscription {sub_id}")
        return page


async def list_webhooks(request: web.Request) -> dict[str, Any]:
    """``GET /api/webhooks/``: webhooks by status, subscription, event type, time."""
    query = request.query
    filters: list[tuple[str, Any]] = []
    if "status" in query:
        status = query["status"].strip().upper()
        if status not in STATUSES:
            raise _bad("status", f"status must be one of {', '.join(STATUSES)}")
        filters.append(("w.status = {}", status))
    if "subscription_id" in query:
        filters.append(("w.subscription_id = {}", _uuid(query["subscription_id"],
                                                         "subscription_id")))
    if query.get("event_type"):  # empty: no filter
        if "\x00" in query["event_type"]:
            raise _bad("event_type", "event_type must not contain NUL")
        filters.append(("w.event_type = {}", query["event_type"]))
    if "since" in query:
        filters.append(("w.created_at >= {}", _time(query["since"], "since")))
    limit, cursor = _page(request)
    async with request.app[POOL].acquire() as conn:
        return await _list(conn, request.app[SETTINGS].retention_ms, filters, limit, cursor)


# --- queries ----------------------------------------------------------------------------------

async def _list(conn: asyncpg.Connection, retention_ms: int, filters: list[tuple[str, Any]],
                limit: int, cursor: tuple[datetime, str] | None) -> dict[str, Any]:
    args: list[Any] = [retention_ms]
    where = []
    for clause, value in filters:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))
    if cursor is not None:
        args += [cursor[0], cursor[1]]
        where.append(f"(w.created_at, w.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (f"SELECT {_COLUMNS} {_FROM} {''.join(' AND ' + w for w in where)} "
           f"ORDER BY w.created_at DESC, w.id DESC LIMIT ${len(args)}")
    rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _with_attempts(conn, rows, retention_ms)
    next_cursor = _encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return {"items": items, "next_cursor": next_cursor}


async def _with_attempts(conn: asyncpg.Connection, rows: list[asyncpg.Record],
                         retention_ms: int) -> list[dict[str, Any]]:
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
        "delivery_attempts": [{
            "attempt_number": a["attempt_number"],
            "timestamp": _iso(a["started_at"]),
            "status_code": a["status_code"],
            "error_detail": a["error"],
            "is_success": a["outcome"] == "delivered",
            "duration_ms": a["duration_ms"],
        } for a in attempts],
    }


# --- parameters -------------------------------------------------------------------------------

def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _uuid(text: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _bad(field, f"{field} must be a UUID") from None


def _time(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, f"{field} must be an RFC 3339 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _page(request: web.Request) -> tuple[int, tuple[datetime, str] | None]:
    raw = request.query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    cursor = request.query.get("cursor")
    return limit, (_decode_cursor(cursor) if cursor else None)


def _encode_cursor(created_at: datetime, webhook_id: str) -> str:
    raw = orjson.dumps([created_at.astimezone(UTC).isoformat(), webhook_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        moment, webhook_id = orjson.loads(raw)
        created = datetime.fromisoformat(moment)
        if created.tzinfo is None or not isinstance(webhook_id, str) or "\x00" in webhook_id:
            raise ValueError("bad cursor")
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise _bad("cursor", "cursor is not one this API returned") from None
    return created, webhook_id
