"""Ingest (one subscription) and fan-out (every matching subscription): a webhook, or one fan-out
event, becomes a record on ``<prefix>ingest`` (value: the exact body bytes to deliver; metadata
in headers) and is answered 202 only once Kafka acknowledged it. A fan-out event is one record
keyed by its event id, whatever its width: the delivery agents expand it into one record per
matching subscription (delivery_agents/agent.py), de-duplicated by their derived ids."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from ingest_gateway import idempotency, metrics, validation
from ingest_gateway.api_models import FanoutAccepted, IngestAccepted
from ingest_gateway.auth import authenticate_ingest, authenticate_unknown_ingest
from ingest_gateway.errors import ApiError, not_found, too_large, validation_error
from ingest_gateway.jsonio import model_response
from ingest_gateway.producing import produce
from ingest_gateway.state import Gateway, gateway
from ingest_gateway.status_api import POOL
from schemas import json_text, records
from schemas.topics import INGEST
from webhookmaster import tracing
from webhookmaster.subscription_table import Subscription

TOPIC_LABEL = INGEST  # the metrics label: the topic's catalogue suffix
IDEMPOTENCY_HEADER = "Idempotency-Key"


async def _read_body(request: web.Request, gw: Gateway) -> bytes:
    """The exact request bytes; 413 above the limit (declared length first, then actual)."""
    limit = gw.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    body = await request.read()  # aiohttp raises 413 itself beyond client_max_size
    if len(body) > limit:
        raise too_large(limit)
    return body


def _check_json(body: bytes) -> None:
    if not body:
        raise validation_error("the request body is empty")
    try:
        json_text.check(body)
    except json_text.JsonTextError as exc:
        raise validation_error(f"the request body is not JSON: {exc}") from None


def _fanout_members(body: bytes) -> tuple[str, bytes, str | None]:
    """``(event_type, exact payload bytes, event id or None)`` of a fan-out body
    ``{"event_type", "payload", "event_id"?}``."""
    if not body:
        raise validation_error("the request body is empty")
    try:
        members = json_text.members(body)
    except json_text.JsonTextError as exc:
        raise validation_error(f"the request body must be a JSON object: {exc}") from None
    validation.known_fields(members, ("event_type", "payload", "event_id"))
    if "event_type" not in members:
        raise validation_error("event_type is required", "event_type")
    if "payload" not in members:
        raise validation_error("payload is required", "payload")
    event_id = None
    if "event_id" in members:
        event_id = idempotency.event_id(json_text.value(members["event_id"]))
    event_type = validation.event_type(json_text.value(members["event_type"]))
    return event_type, members["payload"], event_id


def _metadata(request: web.Request, **extra: Any) -> bytes:
    headers = request.headers
    return records.dumps(
        {
            "source": "gateway",
            "remote_addr": request.remote,
            "content_type": headers.get("Content-Type"),
            "idempotency_key": headers.get(IDEMPOTENCY_HEADER),
            **extra,
        }
    )


def _check_event_type(sub: Subscription, event_type: str) -> None:
    if not sub.accepts(event_type):
        raise validation_error(
            f"event_type {event_type!r} is not one this subscription accepts: "
            f"{', '.join(sub.event_types)}",
            "event_type",
            allowed=list(sub.event_types),
        )


async def ingest(request: web.Request) -> web.Response:
    """POST /api/ingest/{subscription_id}/?event_type=…: one webhook for one subscription."""
    started = time.perf_counter()
    gw = gateway(request)
    gw.list_share.ingest_seen()
    sub_id = request.match_info["subscription_id"]
    sub = gw.loaded_table().get(sub_id)
    body = await _read_body(request, gw)
    if sub is None:  # authenticate before telling whether the id exists
        authenticate_unknown_ingest(request, body, gw.api_keys)
        raise not_found(f"no subscription {sub_id!r}")
    authenticate_ingest(request, sub, body, gw.api_keys)
    if not sub.is_active:
        raise ApiError(
            409,
            "subscription_inactive",
            f"subscription {sub.id} is inactive; activate it to ingest",
        )
    raw_type = request.query.get("event_type")
    if raw_type is None:
        raise validation_error("the event_type query parameter is required", "event_type")
    event_type = validation.event_type(raw_type)
    _check_event_type(sub, event_type)
    _check_json(body)
    ordering_key = validation.ordering_key(request.query.get("ordering_key"))
    key = idempotency.key(request.headers.get(IDEMPOTENCY_HEADER))
    if key is None:
        webhook_id = str(uuid.uuid4())
    else:
        webhook_id = idempotency.ingest_id(sub.id, key)
        if await _replayed(request, gw, webhook_id, check_view=True):
            return _accepted(IngestAccepted(id=webhook_id, status="accepted"), replayed=True)
    with tracing.span(
        f"publish {gw.ingest_topic}",
        "producer",
        attributes={"webhookmaster.webhook_id": webhook_id},
    ) as traceparent:
        record = records.Webhook(
            webhook_id=webhook_id,
            subscription_id=sub.id,
            event_type=event_type,
            body=body,
            received_at=records.now_iso(),
            metadata=_metadata(request),
            traceparent=traceparent,
            ordering_key=ordering_key,
        )
        headers = record.headers()
        if key is not None:
            headers.append(records.IDEMPOTENT)  # a copy of this id is dropped by the agent
        await produce(gw, gw.ingest_topic, TOPIC_LABEL, sub.id, body, headers)
    if key is not None:
        gw.replays.remember(webhook_id)
    metrics.PAYLOAD_BYTES.observe(len(body))
    metrics.INGEST_SECONDS.labels("ingest").observe(time.perf_counter() - started)
    return _accepted(IngestAccepted(id=webhook_id, status="accepted"), replayed=False)


async def _replayed(request: web.Request, gw: Gateway, webhook_id: str, check_view: bool) -> bool:
    """Whether ``webhook_id`` was accepted before, as far as this gateway can know: its own
    memory, then (``check_view``) the status view. Best effort: a replay it cannot see is
    produced again, and the agent drops the copy."""
    window_s = gw.settings.idempotency_window_s
    if gw.replays.replayed(webhook_id, window_s):
        return True
    if check_view and await idempotency.projected(request.app.get(POOL), webhook_id, window_s):
        gw.replays.remember(webhook_id)
        return True
    return False


def _accepted(answer: IngestAccepted | FanoutAccepted, replayed: bool) -> web.Response:
    response = model_response(answer, 202)
    if replayed:
        response.headers[idempotency.REPLAYED] = "true"
    return response


async def fan_out(request: web.Request) -> web.Response:
    """POST /api/events/: one fan-out record, keyed by the event id; the agents expand it into
    one webhook per active subscription that accepts the event type. The event id (given, or
    derived from ``Idempotency-Key``, else new) is the event's idempotency: the same id sent
    again never fans out twice (delivery_agents/dedupe.py)."""
    started = time.perf_counter()
    gw = gateway(request)
    gw.list_share.ingest_seen()
    gw.loaded_table()  # 503 not_ready until the gateway is ready, as every ingest route
    body = await _read_body(request, gw)
    event_type, payload, event_id = _fanout_members(body)
    key = idempotency.key(request.headers.get(IDEMPOTENCY_HEADER))
    if event_id is None and key is not None:
        event_id = idempotency.events_id(key)
    lasting = event_id is not None  # the producer's id, or the key's: a retry is the same event
    if event_id is None:
        event_id = str(uuid.uuid4())
    elif await _replayed(request, gw, event_id, check_view=False):
        return _accepted(FanoutAccepted(event_id=event_id, status="accepted"), replayed=True)
    with tracing.span(
        f"publish {gw.ingest_topic}", "producer", attributes={"webhookmaster.event_id": event_id}
    ) as traceparent:
        record = records.Webhook(
            webhook_id=event_id,
            subscription_id=None,
            event_type=event_type,
            body=payload,
            received_at=records.now_iso(),
            metadata=_metadata(request, event_id=event_id),
            traceparent=traceparent,
        )
        await produce(gw, gw.ingest_topic, TOPIC_LABEL, event_id, payload, record.headers())
    if lasting:
        gw.replays.remember(event_id)
    metrics.PAYLOAD_BYTES.observe(len(body))
    metrics.INGEST_SECONDS.labels("fanout").observe(time.perf_counter() - started)
    return _accepted(FanoutAccepted(event_id=event_id, status="accepted"), replayed=False)
