"""Ingest (one subscription) and fan-out (every matching subscription): each webhook becomes a
record on ``<prefix>ingest`` (value: the exact body bytes to deliver; metadata in headers) and is
answered 202 only once Kafka acknowledged it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiohttp import web

from ingest_gateway import metrics, validation
from ingest_gateway.api_models import FanoutAccepted, IngestAccepted
from ingest_gateway.auth import authenticate_ingest, authenticate_unknown_ingest
from ingest_gateway.errors import ApiError, not_found, too_large, validation_error
from ingest_gateway.jsonio import model_response
from ingest_gateway.producing import not_acknowledged, produce
from ingest_gateway.state import Gateway, gateway
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


def _fanout_members(body: bytes) -> tuple[str, bytes]:
    """``(event_type, exact payload bytes)`` of a fan-out body ``{"event_type", "payload"}``."""
    if not body:
        raise validation_error("the request body is empty")
    try:
        members = json_text.members(body)
    except json_text.JsonTextError as exc:
        raise validation_error(f"the request body must be a JSON object: {exc}") from None
    for name in members:
        if name not in ("event_type", "payload"):
            raise validation_error(f"unknown field {name!r}; allowed: event_type, payload", name)
    if "event_type" not in members:
        raise validation_error("event_type is required", "event_type")
    if "payload" not in members:
        raise validation_error("payload is required", "payload")
    return validation.event_type(json_text.value(members["event_type"])), members["payload"]


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
    webhook_id = str(uuid.uuid4())
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
        await produce(gw, gw.ingest_topic, TOPIC_LABEL, sub.id, body, record.headers())
    metrics.PAYLOAD_BYTES.observe(len(body))
    metrics.INGEST_SECONDS.labels("ingest").observe(time.perf_counter() - started)
    return model_response(IngestAccepted(id=webhook_id, status="accepted"), 202)


async def fan_out(request: web.Request) -> web.Response:
    """POST /api/events/: one webhook per active subscription that accepts the event type."""
    started = time.perf_counter()
    gw = gateway(request)
    table = gw.loaded_table()
    body = await _read_body(request, gw)
    event_type, payload = _fanout_members(body)
    event_id = str(uuid.uuid4())
    received_at = records.now_iso()
    metadata = _metadata(request, event_id=event_id)
    ids: list[str] = []
    sends = []
    with tracing.span(
        f"publish {gw.ingest_topic}", "producer", attributes={"webhookmaster.event_id": event_id}
    ) as traceparent:
        for sub in table.matching(event_type):
            webhook_id = records.derived_id(event_id, sub.id)
            record = records.Webhook(
                webhook_id=webhook_id,
                subscription_id=sub.id,
                event_type=event_type,
                body=payload,
                received_at=received_at,
                metadata=metadata,
                traceparent=traceparent,
            )
            ids.append(webhook_id)
            sends.append(
                produce(gw, gw.ingest_topic, TOPIC_LABEL, sub.id, payload, record.headers())
            )
        results = await asyncio.gather(*sends, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0] if isinstance(failures[0], ApiError) else not_acknowledged()
    metrics.PAYLOAD_BYTES.observe(len(body))
    metrics.INGEST_SECONDS.labels("fanout").observe(time.perf_counter() - started)
    return model_response(FanoutAccepted(event_id=event_id, ids=ids, status="accepted"), 202)
