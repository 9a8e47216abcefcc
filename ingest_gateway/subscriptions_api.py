"""The subscription API: CRUD on the compacted subscriptions topic.

Every write is produced (acks=all) and, once acknowledged, applied to this process's table with
the acknowledged offset, so the same gateway reads its own writes at once. The record holds the
secret encrypted under the newest key (``secret_key_encrypted``); the API shows it in plain text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ingest_gateway import pagination, validation
from ingest_gateway.errors import validation_error
from ingest_gateway.jsonio import json_response, parse_json
from ingest_gateway.producing import produce
from ingest_gateway.state import Gateway, gateway
from schemas import records
from schemas.topics import SUBSCRIPTIONS
from webhookmaster import signing
from webhookmaster.kafka_clients import record_offset
from webhookmaster.subscription_table import Protection, Subscription

TOPIC_LABEL = SUBSCRIPTIONS  # the metrics label: the topic's catalogue suffix


def _order_key(sub: Subscription) -> tuple[str, str]:
    return sub.created_at, sub.id


async def _json_body(request: web.Request) -> Any:
    try:
        return parse_json(await request.read())
    except ValueError as exc:
        raise validation_error(str(exc)) from None


async def write(gw: Gateway, sub: Subscription) -> None:
    """Produce ``sub`` (its secret encrypted) and apply it locally at its acknowledged offset."""
    msg = await produce(
        gw, gw.subscriptions_topic, TOPIC_LABEL, sub.id, records.dumps(sub.to_stored(gw.table.box))
    )
    gw.table.apply(sub.id, sub, record_offset(msg))


def _view(gw: Gateway, sub: Subscription) -> dict[str, object]:
    """The API's view: the record, plus its circuit breaker as the owning agent published it."""
    return {**sub.to_record(), "circuit": gw.table.circuit(sub.id)}


def _build(
    sub_id: str,
    fields: dict[str, Any],
    created_at: str,
    now: str,
    secret: str,
    current: Subscription | None = None,
) -> Subscription:
    """The new version; an auto-disable's reason and time stay while it stays inactive, and
    go when it is active again (``is_active: true`` re-enables). A rotated-out secret stays
    while the secret is unchanged (a new secret_key here is a hard cut-over)."""
    is_active = fields.get("is_active", True)
    keep = current is not None and not is_active and not current.is_active
    new_secret = fields.get("secret_key", secret)
    rotated = current is not None and current.secret_key == new_secret
    return Subscription(
        id=sub_id,
        target_url=fields["target_url"],
        secret=new_secret,
        event_types=tuple(fields.get("event_types", ())),
        is_active=is_active,
        created_at=created_at,
        updated_at=now,
        protection=Protection.of(
            fields.get("rate_limit"),
            current.disabled_reason if keep and current else None,
            current.disabled_at if keep and current else None,
            current.previous_secret_key if rotated and current else None,
            current.previous_secret_expires_at if rotated and current else None,
            fields.get("ordering"),
            fields.get("on_failure"),
        ),
    )


async def create_subscription(request: web.Request) -> web.Response:
    gw = gateway(request)
    gw.loaded_table()
    fields = validation.subscription_body(await _json_body(request), require_target_url=True)
    now = records.now_iso()
    secret = fields.get("secret_key") or signing.new_secret()
    sub = _build(str(uuid.uuid4()), fields, now, now, secret)
    await write(gw, sub)
    return json_response(_view(gw, sub), 201)


async def list_subscriptions(request: web.Request) -> web.Response:
    gw = gateway(request)
    limit = pagination.limit(request.query)
    after = pagination.decode_cursor(request.query.get("cursor"))
    table = gw.loaded_table()
    await gw.list_share.turn()  # ingest first (list_share.py)
    started = time.perf_counter()
    page, more = table.page(after, limit)  # keyset page by (created_at, id)
    next_cursor = pagination.encode_cursor(_order_key(page[-1])) if more and page else None
    response = json_response({"items": [_view(gw, s) for s in page], "next_cursor": next_cursor})
    await response.prepare(request)  # written here, so that its share counts the writing too
    await response.write_eof()
    gw.list_share.spent(time.perf_counter() - started)
    return response


async def get_subscription(request: web.Request) -> web.Response:
    gw = gateway(request)
    return json_response(_view(gw, gw.subscription(request.match_info["id"])))


async def replace_subscription(request: web.Request) -> web.Response:
    """PUT: every writable field from the body; omitted ones take their defaults, except an
    omitted secret_key, which keeps the current secret."""
    return await _rewrite(
        request, require_target_url=True, fields_of=lambda current, fields: fields
    )


async def update_subscription(request: web.Request) -> web.Response:
    """PATCH: only the fields given."""
    return await _rewrite(
        request,
        require_target_url=False,
        fields_of=lambda current, fields: {**current.to_record(), **fields},
    )


async def _rewrite(
    request: web.Request,
    require_target_url: bool,
    fields_of: Callable[[Subscription, dict[str, Any]], dict[str, Any]],
) -> web.Response:
    """Write a new version of an existing subscription, its fields from ``fields_of(current,
    validated body)``; one writer per subscription at a time in this process."""
    gw = gateway(request)
    sub_id = request.match_info["id"]
    gw.subscription(sub_id)
    fields = validation.subscription_body(
        await _json_body(request), require_target_url=require_target_url
    )
    async with gw.write_lock(sub_id):
        current = gw.subscription(sub_id)
        sub = _build(
            sub_id,
            fields_of(current, fields),
            current.created_at,
            records.now_iso(),
            current.secret_key,
            current,
        )
        await write(gw, sub)
    return json_response(_view(gw, sub))


async def delete_subscription(request: web.Request) -> web.Response:
    """DELETE: a tombstone on the topic; 204."""
    gw = gateway(request)
    sub_id = request.match_info["id"]
    gw.subscription(sub_id)
    async with gw.write_lock(sub_id):
        gw.subscription(sub_id)
        msg = await produce(gw, gw.subscriptions_topic, TOPIC_LABEL, sub_id, None)
        gw.table.apply(sub_id, None, record_offset(msg))
    gw.write_locks.pop(sub_id, None)
    return web.Response(status=204)
