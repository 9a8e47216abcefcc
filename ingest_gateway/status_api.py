"""The status API: what happened to a webhook, a subscription's history, webhook search.

It reads what the status projector writes through :mod:`ingest_gateway.status_queries`, on an
asyncpg pool created and closed with the app. Lists are newest first with the gateway's keyset
pagination (:mod:`ingest_gateway.pagination`). Errors are the gateway's JSON ``ApiError``
bodies; PostgreSQL unreachable is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from ingest_gateway import metrics, pagination, status_queries
from ingest_gateway.errors import ApiError, not_found, unavailable, validation_error
from ingest_gateway.jsonio import json_response
from schemas.records import Status
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

POOL = web.AppKey("status_pool", asyncpg.Pool)
SETTINGS = web.AppKey("status_settings", Settings)

DEFAULT_LIMIT = 20
PING_INTERVAL_S = 5.0  # between two PostgreSQL pings (webhookmaster_gateway_db_up)
STATUSES = tuple(Status)
BAD_CURSOR = "cursor is not one this API returned"

# PostgreSQL cannot answer: the request may be retried later.
DB_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def setup(app: web.Application, settings: Settings) -> None:
    """The status API alone on ``app``: its pool (:func:`add_pool`) and its routes from the
    route table."""
    from ingest_gateway import routes  # the table imports this module's handlers

    add_pool(app, settings)
    routes.register(app, tag="status")


def add_pool(app: web.Application, settings: Settings) -> None:
    """The asyncpg pool the handlers use, created and closed with the app."""
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_pool_context)


async def _pool_context(app: web.Application) -> AsyncIterator[None]:
    app[POOL] = await status_queries.create_pool(app[SETTINGS])
    pinger = asyncio.create_task(_ping(app[POOL]), name="status-db-ping")
    try:
        yield
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
        await app[POOL].close()


async def _ping(pool: asyncpg.Pool) -> None:
    """Keep ``webhookmaster_gateway_db_up`` current while no status request comes."""
    while True:
        try:
            async with pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1", timeout=5)
            metrics.DB_UP.set(1)
        except (*DB_DOWN, asyncpg.PostgresError):
            metrics.DB_UP.set(0)
        await asyncio.sleep(PING_INTERVAL_S)


Handler = Callable[[web.Request], Awaitable[Any]]
StatusHandler = Callable[[web.Request], Awaitable[tuple[int, Any]]]


def db_handler(fn: StatusHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``fn``'s ``(status, body)`` as JSON; its errors and the database's as JSON error bodies
    (also in an app without the gateway's error middleware). Every route that reads the
    status database answers through it."""

    @functools.wraps(fn)
    async def handle(request: web.Request) -> web.Response:
        try:
            status, body = await fn(request)
            return json_response(body, status)
        except ApiError as exc:
            return exc.response()
        except DB_DOWN as exc:
            metrics.DB_UP.set(0)
            log.warning(
                "PostgreSQL unavailable in %s: %s: %s", request.path, type(exc).__name__, exc
            )
            return unavailable(
                "the status database is unavailable; retry later", "database_unavailable"
            ).response()
        except asyncpg.PostgresError:
            log.exception("query failed in %s", request.path)
            return ApiError(500, "internal_error", "internal server error").response()

    return handle


def _handler(fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """As :func:`db_handler`, for a ``fn`` whose result is a 200 body."""

    @functools.wraps(fn)
    async def ok(request: web.Request) -> tuple[int, Any]:
        return 200, await fn(request)

    return db_handler(ok)


# --- handlers ---------------------------------------------------------------------------------


@_handler
async def webhook_status(request: web.Request) -> dict[str, Any]:
    """``GET /api/status/{webhook_id}/``: one webhook with its attempts."""
    webhook_id = request.match_info["webhook_id"]
    retention = request.app[SETTINGS].retention_ms
    if "\x00" in webhook_id:  # PostgreSQL text cannot hold NUL: no webhook has this id
        raise not_found(f"no webhook {webhook_id!r}")
    async with request.app[POOL].acquire() as conn:
        found = await status_queries.webhook(conn, retention, webhook_id)
    if found is None:
        raise not_found(f"no webhook {webhook_id!r} in the last {retention // 3_600_000} hours")
    return found


@_handler
async def subscription_history(request: web.Request) -> dict[str, Any]:
    """``GET /api/subscriptions/{id}/history/``: the subscription's webhooks, newest first."""
    sub_id = _uuid(request.match_info["id"], "id")
    limit, after = _page(request)
    async with request.app[POOL].acquire() as conn:
        page = await _list(conn, request, [("w.subscription_id = {}", sub_id)], limit, after)
        if (
            not page["items"]
            and after is None
            and not await status_queries.subscription_exists(conn, sub_id)
        ):
            raise not_found(f"no subscription {sub_id}")
        return page


@_handler
async def list_webhooks(request: web.Request) -> dict[str, Any]:
    """``GET /api/webhooks/``: webhooks by status, subscription, event type, time."""
    query = request.query
    filters: list[tuple[str, Any]] = []
    if "status" in query:
        status = query["status"].strip().upper()
        if status not in STATUSES:
            raise validation_error(f"status must be one of {', '.join(STATUSES)}", "status")
        filters.append(("w.status = {}", status))
    if "subscription_id" in query:
        filters.append(
            ("w.subscription_id = {}", _uuid(query["subscription_id"], "subscription_id"))
        )
    if query.get("event_type"):  # empty: no filter
        if "\x00" in query["event_type"]:
            raise validation_error("event_type must not contain NUL", "event_type")
        filters.append(("w.event_type = {}", query["event_type"]))
    if "since" in query:
        filters.append(("w.created_at >= {}", _time(query["since"], "since")))
    limit, after = _page(request)
    async with request.app[POOL].acquire() as conn:
        return await _list(conn, request, filters, limit, after)


async def _list(
    conn: asyncpg.Connection,
    request: web.Request,
    filters: list[tuple[str, Any]],
    limit: int,
    after: status_queries.Position | None,
) -> dict[str, Any]:
    items, last = await status_queries.webhooks(
        conn, request.app[SETTINGS].retention_ms, filters, limit, after
    )
    next_cursor = None
    if last is not None:
        next_cursor = pagination.encode_cursor((last[0].astimezone(UTC).isoformat(), last[1]))
    return {"items": items, "next_cursor": next_cursor}


# --- parameters -------------------------------------------------------------------------------


def _uuid(text: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise validation_error(f"{field} must be a UUID", field) from None


def _time(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise validation_error(f"{field} must be an RFC 3339 timestamp", field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _page(request: web.Request) -> tuple[int, status_queries.Position | None]:
    """The ``limit`` and the position the ``cursor`` stands for."""
    limit = pagination.limit(request.query, default=DEFAULT_LIMIT)
    position = pagination.decode_cursor(request.query.get("cursor"), BAD_CURSOR)
    if position is None:
        return limit, None
    moment, webhook_id = position
    try:
        created = datetime.fromisoformat(moment)
    except ValueError:
        created = None
    if created is None or created.tzinfo is None or "\x00" in webhook_id:
        raise validation_error(BAD_CURSOR, "cursor")
    return limit, (created, webhook_id)
