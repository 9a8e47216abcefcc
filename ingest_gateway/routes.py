"""The gateway's route table: every HTTP operation once, with its handler and its description.

:func:`register` adds the routes to an app and :func:`ingest_gateway.openapi.document` builds
the OpenAPI document from the same :data:`ROUTES`, so no route exists undocumented.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ingest_gateway import api_models as m
from ingest_gateway import ingest_api, openapi, status_api, subscriptions_api, swagger_ui
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


def _operations() -> list[Route]:
    probe = Reply("Status.", m.Probe)
    return [
        Route(
            method="GET",
            path="/healthz",
            handler=health_server.healthz,
            operation_id="healthz",
            summary="Liveness",
            tag="operations",
            security=PUBLIC,
            responses={200: probe},
            head=True,
        ),
        Route(
            method="GET",
            path="/readyz",
            handler=health_server.readyz,
            operation_id="readyz",
            summary="Readiness: Kafka producer connected and subscription table loaded",
            tag="operations",
            security=PUBLIC,
            responses={200: probe, 503: Reply("Not ready.", m.Probe)},
            head=True,
        ),
        Route(
            method="GET",
            path="/metrics",
            handler=health_server.metrics_handler(),
            operation_id="metrics",
            summary="Prometheus metrics",
            tag="operations",
            security=PUBLIC,
            responses={200: Reply("Prometheus text format.", str, ("text/plain",))},
            head=True,
        ),
        Route(
            method="GET",
            path="/api/openapi.json",
            handler=openapi.serve_document,
            operation_id="openapi",
            summary="This document",
            tag="operations",
            security=PUBLIC,
            responses={200: Reply("OpenAPI 3.1 document.", dict[str, Any])},
            name="openapi",
        ),
        Route(
            method="GET",
            path="/swagger/",
            handler=swagger_ui.swagger_page,
            operation_id="swaggerUi",
            summary="Swagger UI for this document",
            tag="operations",
            security=PUBLIC,
            responses={200: Reply("HTML page.", str, ("text/html",))},
            name="swagger",
        ),
        Route(
            method="GET",
            path="/swagger/assets/{name}",
            handler=swagger_ui.swagger_asset,
            operation_id="swaggerUiAsset",
            summary=f"A Swagger UI {swagger_ui.SWAGGER_UI_VERSION} file of the page",
            tag="operations",
            security=PUBLIC,
            params=(Param("name", "path", "File name.", swagger_ui.AssetName),),
            responses={
                200: Reply("The file.", str, swagger_ui.ASSET_TYPES),
                404: error("No such file."),
            },
            name="swagger_asset",
        ),
    ]


def _subscriptions() -> list[Route]:
    created = Reply("The subscription, with its secret.", m.Subscription, links=SUBSCRIPTION_LINKS)
    return [
        Route(
            method="POST",
            path="/api/subscriptions/",
            handler=subscriptions_api.create_subscription,
            operation_id="createSubscription",
            summary="Create a subscription",
            tag="subscriptions",
            body=m.SubscriptionCreate,
            responses={201: created, 400: BAD_REQUEST, 401: UNAUTHORIZED, 503: KAFKA_DOWN},
            name="subscriptions",
        ),
        Route(
            method="GET",
            path="/api/subscriptions/",
            handler=subscriptions_api.list_subscriptions,
            operation_id="listSubscriptions",
            summary="List subscriptions in (created_at, id) order",
            tag="subscriptions",
            params=(_limit(DEFAULT_LIMIT), CURSOR),
            responses={
                200: Reply("A page.", m.SubscriptionList),
                400: BAD_REQUEST,
                401: UNAUTHORIZED,
                503: KAFKA_DOWN,
            },
            name="subscriptions",
        ),
        Route(
            method="GET",
            path="/api/subscriptions/{id}/",
            handler=subscriptions_api.get_subscription,
            operation_id="getSubscription",
            summary="Get a subscription",
            tag="subscriptions",
            params=(SUBSCRIPTION_ID,),
            responses={
                200: Reply("The subscription.", m.Subscription),
                401: UNAUTHORIZED,
                404: NOT_FOUND,
            },
            name="subscription",
        ),
        Route(
            method="PUT",
            path="/api/subscriptions/{id}/",
            handler=subscriptions_api.replace_subscription,
            operation_id="replaceSubscription",
            summary="Replace a subscription (omitted fields take their defaults; an omitted "
            "secret_key keeps the current secret)",
            tag="subscriptions",
            params=(SUBSCRIPTION_ID,),
            body=m.SubscriptionCreate,
            responses=SUBSCRIPTION_WRITE,
            name="subscription",
        ),
        Route(
            method="PATCH",
            path="/api/subscriptions/{id}/",
            handler=subscriptions_api.update_subscription,
            operation_id="updateSubscription",
            summary="Update the given fields",
            tag="subscriptions",
            params=(SUBSCRIPTION_ID,),
            body=m.SubscriptionPatch,
            responses=SUBSCRIPTION_WRITE,
            name="subscription",
        ),
        Route(
            method="DELETE",
            path="/api/subscriptions/{id}/",
            handler=subscriptions_api.delete_subscription,
            operation_id="deleteSubscription",
            summary="Delete a subscription (tombstone on the topic)",
            tag="subscriptions",
            params=(SUBSCRIPTION_ID,),
            responses={
                204: Reply("Deleted."),
                401: UNAUTHORIZED,
                404: NOT_FOUND,
                503: KAFKA_DOWN,
            },
            name="subscription",
        ),
    ]


def _ingest() -> list[Route]:
    accepted = Reply(
        "Accepted and acknowledged by Kafka.",
        m.IngestAccepted,
        links={"status": Link("webhookStatus", {"webhook_id": "id"})},
    )
    return [
        Route(
            method="POST",
            path="/api/ingest/{subscription_id}/",
            handler=ingest_api.ingest,
            operation_id="ingest",
            summary="Accept one webhook for one subscription",
            description="The body is the payload (any JSON). 202 only once Kafka acknowledged "
            "the record. With a subscription secret, X-Hub-Signature-256 over the exact body "
            "bytes is required (or an API key).",
            tag="ingest",
            security=SIGNATURE_OR_API_KEY,
            params=(
                Param("subscription_id", "path", "Target subscription.", m.UuidText),
                Param("event_type", "query", "Event type of the webhook.", EventType, True),
                Param(IDEMPOTENCY_HEADER, "header", "Stored in the record's metadata."),
            ),
            body=m.AnyJson,
            responses={
                202: accepted,
                400: error(
                    "Body not JSON, event_type missing or not accepted by the subscription, "
                    "or signature missing."
                ),
                401: error("Wrong signature, or no valid API key where one is needed."),
                404: NOT_FOUND,
                409: error("The subscription is inactive (error: subscription_inactive)."),
                413: TOO_LARGE,
                503: KAFKA_DOWN,
            },
            name="ingest",
        ),
        Route(
            method="POST",
            path="/api/events/",
            handler=ingest_api.fan_out,
            operation_id="fanOut",
            summary="Fan one event out to every matching active subscription",
            tag="ingest",
            body=m.FanoutEvent,
            responses={
                202: Reply("Every record acknowledged (ids may be empty).", m.FanoutAccepted),
                400: BAD_REQUEST,
                401: UNAUTHORIZED,
                413: TOO_LARGE,
                503: KAFKA_DOWN,
            },
            name="events",
        ),
    ]


def _status() -> list[Route]:
    page = Reply("A page.", m.WebhookList)
    return [
        Route(
            method="GET",
            path="/api/status/{webhook_id}/",
            handler=status_api.webhook_status,
            operation_id="webhookStatus",
            summary="Status and delivery attempts of one webhook",
            tag="status",
            params=(Param("webhook_id", "path", "Webhook id."),),
            responses={
                200: Reply("The webhook.", m.WebhookStatus),
                401: UNAUTHORIZED,
                404: error("Unknown webhook."),
            },
            head=True,
        ),
        Route(
            method="GET",
            path="/api/subscriptions/{id}/history/",
            handler=status_api.subscription_history,
            operation_id="subscriptionHistory",
            summary="Webhooks of one subscription, newest first",
            tag="status",
            params=(SUBSCRIPTION_ID, _limit(status_api.DEFAULT_LIMIT), CURSOR),
            responses={200: page, 400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND},
            head=True,
        ),
        Route(
            method="GET",
            path="/api/webhooks/",
            handler=status_api.list_webhooks,
            operation_id="listWebhooks",
            summary="Search webhooks",
            tag="status",
            params=(
                Param("status", "query", "Only this status.", m.StatusName),
                Param("subscription_id", "query", "Only this subscription.", m.UuidText),
                Param("event_type", "query", "Only this event type (empty: any)."),
                Param(
                    "since", "query", "Only webhooks created at or after this time.", m.DateTimeText
                ),
                _limit(status_api.DEFAULT_LIMIT),
                CURSOR,
            ),
            responses={200: page, 400: BAD_REQUEST, 401: UNAUTHORIZED},
            head=True,
        ),
    ]


ROUTES: tuple[Route, ...] = (*_operations(), *_subscriptions(), *_ingest(), *_status())


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
