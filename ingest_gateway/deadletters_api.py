"""The dead-letter routes: list (filters, cursor pages) and redrive (:mod:`ingest_gateway.
deadletters`)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiohttp import web

from ingest_gateway import api_models as m
from ingest_gateway import deadletters, pagination, redelivery
from ingest_gateway.errors import ApiError, not_found, validation_error
from ingest_gateway.redelivery_api import parse_time, parse_uuid, read_body
from ingest_gateway.state import gateway
from ingest_gateway.status_api import POOL, SETTINGS, db_handler

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
BAD_CURSOR = "cursor is not one this API returned"


def _filter(
    subscription_id: Any, reason: str | None, since: str | None, until: str | None
) -> deadletters.Filter:
    if reason is not None and "\x00" in reason:
        raise validation_error("reason must not contain NUL", "reason")
    start = None if since is None else parse_time(since, "since")
    end = None if until is None else parse_time(until, "until")
    return deadletters.Filter(
        subscription_id=None
        if subscription_id is None
        else parse_uuid(subscription_id, "subscription_id"),
        reason=reason or None,
        since=start,
        until=end,
    )


def _after(raw: str | None) -> tuple[datetime, int] | None:
    position = pagination.decode_cursor(raw, BAD_CURSOR)
    if position is None:
        return None
    try:
        moment, letter_id = datetime.fromisoformat(position[0]), int(position[1])
    except ValueError:
        raise validation_error(BAD_CURSOR, "cursor") from None
    if moment.tzinfo is None:
        raise validation_error(BAD_CURSOR, "cursor")
    return moment, letter_id


@db_handler
async def list_deadletters(request: web.Request) -> tuple[int, Any]:
    """``GET /api/deadletters/``: dead letters newest first."""
    query = request.query
    where = _filter(
        query.get("subscription_id"), query.get("reason"), query.get("since"), query.get("until")
    )
    limit = pagination.limit(query, default=DEFAULT_LIMIT)
    after = _after(query.get("cursor"))
    async with request.app[POOL].acquire() as conn:
        items, last = await deadletters.page(conn, where, limit, after)
    next_cursor = None
    if last is not None:
        next_cursor = pagination.encode_cursor((last[0].isoformat(), str(last[1])))
    return 200, {"items": items, "next_cursor": next_cursor}


@db_handler
async def redrive(request: web.Request) -> tuple[int, Any]:
    """``POST /api/deadletters/redrive/``: the chosen letters' webhooks go again."""
    gw = gateway(request)
    body: m.RedriveRequest = await read_body(request, m.RedriveRequest)
    if body.ids is not None:
        if any(f is not None for f in (body.subscription_id, body.reason, body.since, body.until)):
            raise validation_error("give ids or a filter, not both", "ids")
        where = deadletters.Filter(ids=body.ids)
    elif all(f is None for f in (body.subscription_id, body.reason, body.since, body.until)):
        raise validation_error(
            "give ids, or a filter (subscription_id, reason, since, until)", "ids"
        )
    else:
        where = _filter(body.subscription_id, body.reason, body.since, body.until)
    pool, retention = request.app[POOL], request.app[SETTINGS].retention_ms
    if body.ids is not None:
        async with pool.acquire() as conn:
            missing = await deadletters.missing(conn, body.ids)
        if missing:  # nothing is sent: the caller names letters that do not exist
            raise not_found(f"no dead letter with id(s) {', '.join(map(str, missing))}")
    count, refused = 0, 0
    async for rows in deadletters.matching(pool, where):
        chains, sent = [], []
        async with pool.acquire() as conn:
            for row in rows:
                if not deadletters.redrivable(row):
                    refused += 1
                    continue
                try:
                    chains.append(await deadletters.chain_for(conn, retention, row))
                    sent.append(row["id"])
                except ApiError as exc:
                    log.warning("redrive: %s", exc.detail)
                    refused += 1
        await asyncio.gather(*(redelivery.send(gw, chain) for chain in chains))
        async with pool.acquire() as conn:
            await deadletters.mark_redriven(conn, sent)
        count += len(chains)
    if body.ids is not None and refused and not count:
        raise ApiError(
            422,
            "not_redrivable",
            "none of these dead letters can be redriven: unreadable records have no "
            "webhook to send (see their raw text in GET /api/deadletters/)",
            refused=refused,
        )
    log.info("redrive: %d sent again, %d refused", count, refused)
    return 202, {"count": count, "refused": refused}
