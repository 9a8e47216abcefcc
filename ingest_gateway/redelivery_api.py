"""Resend and recover: the operator's redelivery routes (:mod:`ingest_gateway.redelivery`).

``POST /api/webhooks/{id}/resend/`` starts a new delivery chain for one webhook, whatever its
state; ``POST /api/subscriptions/{id}/recover/`` does so for every webhook of a subscription
received in a window whose status is FAILED. Both answer 202 once Kafka acknowledged every
record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ingest_gateway import api_models as m
from ingest_gateway import redelivery
from ingest_gateway.errors import ApiError, not_found, validation_error
from ingest_gateway.state import gateway
from ingest_gateway.status_api import POOL, SETTINGS, db_handler

log = logging.getLogger(__name__)


def parse_time(text: Any, field: str) -> datetime:
    """An RFC 3339 timestamp with a zone (a naive one is read as UTC), else 400."""
    if not isinstance(text, str):
        raise validation_error(f"{field} must be an RFC 3339 timestamp", field)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise validation_error(f"{field} must be an RFC 3339 timestamp", field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_uuid(text: Any, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise validation_error(f"{field} must be a UUID", field) from None


async def read_body(request: web.Request, model: type[msgspec.Struct]) -> Any:
    """The request body as ``model``; 400 naming the field when it is not."""
    raw = await request.read()
    if not raw:
        raise validation_error("the request body is empty")
    try:
        return msgspec.json.decode(raw, type=model)
    except msgspec.ValidationError as exc:
        _, at, path = str(exc).rpartition("at `$.")
        field = path.rstrip("`").split(".")[0].split("[")[0] if at else None
        raise validation_error(f"invalid body: {exc}", field or None) from None
    except msgspec.DecodeError as exc:
        raise validation_error(f"the request body is not JSON: {exc}") from None


def window(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    """``since`` and ``until`` as times; 400 unless since comes before until."""
    start = parse_time(since, "since")
    end = None if until is None else parse_time(until, "until")
    if end is not None and end <= start:
        raise validation_error("until must be later than since", "until")
    return start, end


@db_handler
async def resend(request: web.Request) -> tuple[int, Any]:
    """``POST /api/webhooks/{id}/resend/``: a new delivery chain for one webhook."""
    gw = gateway(request)
    webhook_id = request.match_info["id"]
    retention = request.app[SETTINGS].retention_ms
    stored = None
    if "\x00" not in webhook_id:  # PostgreSQL text cannot hold NUL: no webhook has this id
        async with request.app[POOL].acquire() as conn:
            stored = await redelivery.find(conn, retention, webhook_id)
    if stored is None:
        raise not_found(f"no webhook {webhook_id!r} in the last {retention // 3_600_000} hours")
    await redelivery.send(gw, redelivery.new_chain(stored))
    log.info("resend of webhook %s (chain %d)", stored.id, stored.chain + 1)
    return 202, {"id": stored.id, "status": "accepted"}


@db_handler
async def recover(request: web.Request) -> tuple[int, Any]:
    """``POST /api/subscriptions/{id}/recover/``: resend every FAILED webhook of the window."""
    gw = gateway(request)
    sub_id = parse_uuid(request.match_info["id"], "id")
    body: m.RecoverRequest = await read_body(request, m.RecoverRequest)
    since, until = window(body.since, body.until)
    gw.subscription(str(sub_id))  # 404 for an unknown subscription
    count = 0
    async for batch in redelivery.failed_in_window(
        request.app[POOL], request.app[SETTINGS].retention_ms, sub_id, since, until
    ):
        chains = []
        for stored in batch:
            try:
                chains.append(redelivery.new_chain(stored))
            except ApiError as exc:  # one webhook that cannot go again does not stop the rest
                log.warning("recover: skipping %s: %s", stored.id, exc.detail)
        await asyncio.gather(*(redelivery.send(gw, chain) for chain in chains))
        count += len(chains)
    log.info("recover of subscription %s: %d webhook(s) sent again", sub_id, count)
    return 202, {"count": count}
