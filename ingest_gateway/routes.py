"""The gateway's route table: every HTTP operation once, with its handler and its description.

:func:`register` adds the routes to an app and :func:`ingest_gateway.openapi.document` builds
the OpenAPI document from the same :data:`ROUTES`, so no route exists undocumented.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ingest_gateway import api_models as m
from ingest_gateway import (
    control_routes,
    ingest_api,
    openapi,
    operator_routes,
    ordering_api,
    status_api,
    swagger_ui,
)
from ingest_gateway import subscriptions_api as sub
from ingest_gateway.ingest_api import IDEMPOTENCY_HEADER
from ingest_gateway.openapi import PUBLIC, SIGNATURE_OR_API_KEY, Link, Param, Reply, Route, error
from ingest_gateway.pagination import DEFAULT_LIMIT, MAX_LIMIT
from schemas.records import EventType
from webhookmaster import health_server

BAD_REQUEST = error("Invalid input: the body names the field at fault.")
UNAUTHORIZED = error("API keys are configured and the request has no valid key.")
NOT_FOUND = error("Unknown id.")
TOO_LARGE = error("The body exceeds WM_MAX_BODY_BYTES.")
KAFKA_DOWN = error(
    "Kafka did not acknowledge the write (or the gateway is not ready): nothing was done, "
    "retry after Retry-After seconds.",
    retry_after=True,
)


def _limit(default: int) -> Param:
    return Param(
        "limit",
        "query",
        f"Page size (1-{MAX_LIMIT}, default {default}).",
        m.page_size(default),
    )


CURSOR = Param(
    "cursor",
    "query",
    "Opaque cursor from the previous page's next_cursor (empty: the first page).",
)
SUBSCRIPTION_ID = Param("id", "path", "Subscription id.", m.UuidText)
# What a created subscription's id leads to (the OpenAPI links clients and fuzzers follow).
SUBSCRIPTION_LINKS = {
    "get": Link("getSubscription", {"id": "id"}),
    "replace": Link("replaceSubscription", {"id": "id"}),
    "update": Link("updateSubscription", {"id": "id"}),
    "delete": Link("deleteSubscription", {"id": "id"}),
    "history": Link("subscriptionHistory", {"id": "id"}),
    "ingest": Link("ingest", {"subscription_id": "id"}),
}
SUBSCRIPTION_WRITE = {
    200: Reply("The new state.", m.Subscription),
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    404: NOT_FOUND,
    503: KAFKA_DOWN,
}


PROBE = Reply("Status.", m.Probe)
PAGE = Reply("A page.", m.WebhookList)
CREATED = Reply("The subscription, with its secret.", m.Subscription, links=SUBSCRIPTION_LINKS)
ACCEPTED = Reply(
    "Accepted and acknowledged by Kafka.",
    m.IngestAccepted,
    links={"status": Link("webhookStatus", {"webhook_id": "id"})},
)
INGEST_PARAMS = (
    Param("subscription_id", "path", "Target subscription.", m.UuidText),
    Param("event_type", "query", "Event type of the webhook.", EventType, required=True),
    Param(
        IDEMPOTENCY_HEADER,
        "header",
        "1-255 printable ASCII characters. The same key for "
        "the same subscription within WM_IDEMPOTENCY_WINDOW gives the same webhook id and one "
        "delivery chain; a retry the gateway recognises is answered with "
        "Idempotent-Replayed: true.",
    ),
    Param(
        "ordering_key",
        "query",
        "FIFO subscriptions: the order this webhook belongs to "
        "(1-200 characters; absent: the subscription's one order). See docs/ordering.md.",
        m.OrderingKeyText,
    ),
)
WEBHOOK_FILTERS = (
    Param("status", "query", "Only this status.", m.StatusName),
    Param("subscription_id", "query", "Only this subscription.", m.UuidText),
    Param("event_type", "query", "Only this event type (empty: any)."),
    Param("since", "query", "Only webhooks created at or after this time.", m.DateTimeText),
)
OPS, SUBS, INGEST, STATUS = "operations", "subscriptions", "ingest", "status"  # the tags

# Each row: method, path, handler, operationId, summary, tag, then by name: responses (status →
# Reply), security (default: an API key when keys are configured), params, body (the request
# body's type), description, name (aiohttp's, for auth.PUBLIC_ROUTES), head (GET answers HEAD).
# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health_server.healthz, "healthz", "Liveness", OPS,
          responses={200: PROBE}, security=PUBLIC, head=True),
    Route("GET", "/readyz", health_server.readyz, "readyz",
          "Readiness: Kafka producer connected and subscription table loaded", OPS,
          responses={200: PROBE, 503: Reply("Not ready.", m.Probe)}, security=PUBLIC, head=True),
    Route("GET", "/metrics", health_server.metrics_handler(), "metrics", "Prometheus metrics", OPS,
          responses={200: Reply("Prometheus text format.", str, ("text/plain",))},
          security=PUBLIC, head=True),
    Route("GET", "/api/openapi.json", openapi.serve_document, "openapi", "This document", OPS,
          responses={200: Reply("OpenAPI 3.1 document.", dict[str, Any])},
          security=PUBLIC, name="openapi"),
    Route("GET", "/swagger/", swagger_ui.swagger_page, "swaggerUi",
          "Swagger UI for this document", OPS,
          responses={200: Reply("HTML page.", str, ("text/html",))},
          security=PUBLIC, name="swagger"),
    Route("GET", "/swagger/assets/{name}", swagger_ui.swagger_asset, "swaggerUiAsset",
          f"A Swagger UI {swagger_ui.SWAGGER_UI_VERSION} file of the page", OPS,
          responses={200: Reply("The file.", str, swagger_ui.ASSET_TYPES),
                     404: error("No such file.")},
          security=PUBLIC, params=(Param("name", "path", "File name.", swagger_ui.AssetName),),
          name="swagger_asset"),

    Route("POST", "/api/subscriptions/", sub.create_subscription, "createSubscription",
          "Create a subscription", SUBS,
          responses={201: CREATED, 400: BAD_REQUEST, 401: UNAUTHORIZED, 503: KAFKA_DOWN},
          body=m.SubscriptionCreate, name="subscriptions"),
    Route("GET", "/api/subscriptions/", sub.list_subscriptions, "listSubscriptions",
          "List subscriptions in (created_at, id) order", SUBS,
          responses={200: Reply("A page.", m.SubscriptionList), 400: BAD_REQUEST,
                     401: UNAUTHORIZED, 503: KAFKA_DOWN},
          params=(_limit(DEFAULT_LIMIT), CURSOR), name="subscriptions"),
    Route("GET", "/api/subscriptions/{id}/", sub.get_subscription, "getSubscription",
          "Get a subscription", SUBS,
          responses={200: Reply("The subscription.", m.Subscription), 401: UNAUTHORIZED,
                     404: NOT_FOUND},
          params=(SUBSCRIPTION_ID,), name="subscription"),
    Route("PUT", "/api/subscriptions/{id}/", sub.replace_subscription, "replaceSubscription",
          "Replace a subscription (omitted fields take their defaults; an omitted secret_key "
          "keeps the current secret)", SUBS,
          responses=SUBSCRIPTION_WRITE, params=(SUBSCRIPTION_ID,), body=m.SubscriptionCreate,
          name="subscription"),
    Route("PATCH", "/api/subscriptions/{id}/", sub.update_subscription, "updateSubscription",
          "Update the given fields", SUBS,
          responses=SUBSCRIPTION_WRITE, params=(SUBSCRIPTION_ID,), body=m.SubscriptionPatch,
          name="subscription"),
    Route("DELETE", "/api/subscriptions/{id}/", sub.delete_subscription, "deleteSubscription",
          "Delete a subscription (tombstone on the topic)", SUBS,
          responses={204: Reply("Deleted."), 401: UNAUTHORIZED, 404: NOT_FOUND,
                     503: KAFKA_DOWN},
          params=(SUBSCRIPTION_ID,), name="subscription"),

    Route("POST", "/api/ingest/{subscription_id}/", ingest_api.ingest, "ingest",
          "Accept one webhook for one subscription", INGEST,
          description="The body is the payload (any JSON). 202 only once Kafka acknowledged the "
          "record. With a subscription secret, X-Hub-Signature-256 over the exact body bytes is "
          "required (or an API key).",
          responses={
              202: ACCEPTED,
              400: error("Body not JSON, event_type missing or not accepted by the "
                         "subscription, or signature missing."),
              401: error("Wrong signature, or no valid API key where one is needed."),
              404: NOT_FOUND,
              409: error("The subscription is inactive (error: subscription_inactive)."),
              413: TOO_LARGE,
              503: KAFKA_DOWN},
          security=SIGNATURE_OR_API_KEY, params=INGEST_PARAMS, body=m.AnyJson, name="ingest"),
    Route("POST", "/api/events/", ingest_api.fan_out, "fanOut",
          "Fan one event out to every matching active subscription", INGEST,
          responses={202: Reply("The event's one record acknowledged; the agents expand it.",
                                m.FanoutAccepted),
                     400: BAD_REQUEST, 401: UNAUTHORIZED, 413: TOO_LARGE, 503: KAFKA_DOWN},
          params=(Param(IDEMPOTENCY_HEADER, "header", "Without event_id: the event id is "
                        "derived from this key, so a request sent again is the same event."),),
          body=m.FanoutEvent, name="events"),

    Route("GET", "/api/status/{webhook_id}/", status_api.webhook_status, "webhookStatus",
          "Status and delivery attempts of one webhook", STATUS,
          responses={200: Reply("The webhook.", m.WebhookStatus), 401: UNAUTHORIZED,
                     404: error("Unknown webhook.")},
          params=(Param("webhook_id", "path", "Webhook id."),), head=True),
    Route("GET", "/api/subscriptions/{id}/history/", status_api.subscription_history,
          "subscriptionHistory", "Webhooks of one subscription, newest first", STATUS,
          responses={200: PAGE, 400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND},
          params=(SUBSCRIPTION_ID, _limit(status_api.DEFAULT_LIMIT), CURSOR), head=True),
    Route("GET", "/api/webhooks/", status_api.list_webhooks, "listWebhooks", "Search webhooks",
          STATUS,
          responses={200: PAGE, 400: BAD_REQUEST, 401: UNAUTHORIZED},
          params=(*WEBHOOK_FILTERS, _limit(status_api.DEFAULT_LIMIT), CURSOR), head=True),
    *operator_routes.ROUTES,  # resend, recover, dead letters
    *control_routes.ROUTES,  # secret rotation, event lookup, replay
    Route("POST", "/api/webhooks/{id}/skip/", ordering_api.skip, "skipWebhook",
          "FIFO: end the webhook at the head of its ordering key; the next one goes", SUBS,
          description="Written to every partition of the parked topic; the delivery agent "
          "that owns the key applies it when this webhook is the head of its key, else it "
          "changes nothing. See docs/ordering.md.",
          responses={202: Reply("Command accepted.", m.FifoCommand), 401: UNAUTHORIZED,
                     404: NOT_FOUND, 503: KAFKA_DOWN},
          params=(Param("id", "path", "Webhook id."),), name="webhook_skip"),
    Route("POST", "/api/webhooks/{id}/resume/", ordering_api.resume, "resumeWebhook",
          "FIFO: try a halted head again from its first attempt", SUBS,
          description="For a key halted by on_failure: halt. Applied as skip is.",
          responses={202: Reply("Command accepted.", m.FifoCommand), 401: UNAUTHORIZED,
                     404: NOT_FOUND, 503: KAFKA_DOWN},
          params=(Param("id", "path", "Webhook id."),), name="webhook_resume"),
)
# fmt: on


def register(app: web.Application, tag: str | None = None) -> None:
    """Add the routes of :data:`ROUTES` (only those of ``tag`` when given) to ``app``, each path
    as one aiohttp resource, and the OpenAPI document of the whole table."""
    resources: dict[str, web.Resource] = {}
    for route in ROUTES:
        if tag is not None and route.tag != tag:
            continue
        resource = resources.get(route.path)
        if resource is None:
            resource = resources[route.path] = app.router.add_resource(route.path, name=route.name)
        resource.add_route(route.method, route.handler)
        if route.head:
            resource.add_route("HEAD", route.handler)
    app[openapi.DOCUMENT] = orjson.dumps(openapi.document(ROUTES))
