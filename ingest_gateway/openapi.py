"""The OpenAPI 3.1 document of every gateway route (``/api/openapi.json``) and a Swagger UI page
(``/swagger/``) whose assets the gateway serves itself from the swagger-ui-bundle-v2 package
(``/swagger/assets/...``), so it works offline. All are public, also when API keys are
configured."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from ingest_gateway.errors import ApiError
from ingest_gateway.validation import EVENT_TYPE_PATTERN, MAX_EVENT_TYPE_LENGTH
from schemas.records import Status
from webhookmaster import __version__

JSON = "application/json"
SWAGGER_UI_VERSION = swagger_ui_path.name.removeprefix("swagger-ui-")
# The Swagger UI files the page needs, by name, with their content type: nothing else of the
# package's folder is served.
SWAGGER_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
EVENT_TYPE = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_EVENT_TYPE_LENGTH,
    "pattern": EVENT_TYPE_PATTERN,
    "description": "1-200 printable ASCII characters, no space at either end "
    "(it is sent as the X-Webhook-Event-Type header).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _subscription_write(summary: str, operation_id: str, body: str) -> dict[str, Any]:
    """PUT or PATCH of one subscription: ``body`` names the request schema."""
    return {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["subscriptions"],
        "security": API_KEY,
        "requestBody": {"required": True, "content": _json_content(_ref(body))},
        "responses": {
            "200": _ok("The new state.", _ref("Subscription")),
            "400": BAD_REQUEST,
            "401": UNAUTHORIZED,
            "404": NOT_FOUND,
            "503": KAFKA_DOWN,
        },
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response = {"description": description, "content": _json_content(_ref("Error"))}
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return response


def _path_param(name: str, description: str, uuid: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if uuid:
        schema["format"] = "uuid"
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _query(
    name: str, description: str, schema: dict[str, Any], required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _limit(default: int) -> dict[str, Any]:
    return _query(
        "limit",
        f"Page size (1-200, default {default}).",
        {"type": "integer", "minimum": 1, "maximum": 200, "default": default},
    )


CURSOR = _query(
    "cursor",
    "Opaque cursor from the previous page's next_cursor (empty: the first page).",
    {"type": "string"},
)
BAD_REQUEST = _error("Invalid input: the body names the field at fault.")
UNAUTHORIZED = _error("API keys are configured and the request has no valid key.")
NOT_FOUND = _error("Unknown id.")
KAFKA_DOWN = _error(
    "Kafka did not acknowledge the write (or the gateway is not ready): "
    "nothing was done, retry after Retry-After seconds.",
    retry_after=True,
)
API_KEY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {}]

SUBSCRIPTION_WRITABLE = {
    "target_url": {
        "type": "string",
        "format": "uri",
        "maxLength": 2048,
        "description": "Absolute http(s) URI with a host, ASCII only (an IRI is "
        "refused: percent-encode, punycode the host); an IPv4 host "
        "only as a dotted quad.",
    },
    "secret_key": {
        "type": "string",
        "minLength": 1,
        "description": "Signing secret. Omitted on create: a new whsec_ secret; "
        "omitted on PUT: the current secret is kept.",
    },
    "event_types": {
        "type": "array",
        "items": EVENT_TYPE,
        "description": "Event types delivered; empty: every type.",
    },
    "is_active": {
        "type": "boolean",
        "description": "Inactive subscriptions refuse ingest (409) and get no fan-out events.",
    },
}

STATUS_OBJECT = {
    "type": "object",
    "required": [
        "id",
        "subscription",
        "subscription_url",
        "event_type",
        "payload",
        "status",
        "retry_count",
        "next_retry_at",
        "created_at",
        "delivered_at",
        "delivery_attempts",
    ],
    "properties": {
        "id": {"type": "string", "description": "Webhook id."},
        "subscription": {"type": ["string", "null"], "format": "uuid"},
        "subscription_url": {"type": ["string", "null"]},
        "event_type": {"type": "string"},
        "payload": {"description": "The webhook's JSON payload."},
        "status": {"enum": [s.value for s in Status]},
        "retry_count": {"type": "integer", "minimum": 0},
        "next_retry_at": NULLABLE_DATE_TIME,
        "created_at": DATE_TIME,
        "delivered_at": NULLABLE_DATE_TIME,
        "delivery_attempts": {"type": "array", "items": _ref("DeliveryAttempt")},
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {
                "type": "string",
                "description": "Machine-readable code, e.g. "
                "validation_error, not_found, unauthorized, invalid_signature, "
                "signature_required, subscription_inactive, payload_too_large, "
                "kafka_unavailable, not_ready, method_not_allowed, internal_error.",
            },
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "The input field at fault."},
            "allowed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Accepted event types (event_type not accepted).",
            },
        },
    },
    "Subscription": {
        "type": "object",
        "required": [
            "id",
            "target_url",
            "secret_key",
            "event_types",
            "is_active",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            **SUBSCRIPTION_WRITABLE,
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        },
    },
    "SubscriptionCreate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["target_url"],
        "properties": SUBSCRIPTION_WRITABLE,
    },
    "SubscriptionPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": SUBSCRIPTION_WRITABLE,
    },
    "SubscriptionList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Subscription")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "IngestAccepted": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "Webhook id."},
            "status": {"const": "accepted"},
        },
    },
    "FanoutEvent": {
        "type": "object",
        "additionalProperties": False,
        "required": ["event_type", "payload"],
        "properties": {"event_type": EVENT_TYPE, "payload": {"description": "Any JSON value."}},
    },
    "FanoutAccepted": {
        "type": "object",
        "required": ["event_id", "ids", "status"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "ids": {
                "type": "array",
                "items": {"type": "string", "format": "uuid"},
                "description": "One webhook id per matching subscription (may be empty).",
            },
            "status": {"const": "accepted"},
        },
    },
    "DeliveryAttempt": {
        "type": "object",
        "required": [
            "attempt_number",
            "timestamp",
            "status_code",
            "error_detail",
            "is_success",
            "duration_ms",
        ],
        "properties": {
            "attempt_number": {"type": "integer", "minimum": 1},
            "timestamp": DATE_TIME,
            "status_code": {"type": ["integer", "null"]},
            "error_detail": {"type": ["string", "null"]},
            "is_success": {"type": "boolean"},
            "duration_ms": {"type": "number", "minimum": 0},
        },
    },
    "WebhookStatus": STATUS_OBJECT,
    "WebhookList": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("WebhookStatus")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Probe": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: ``operation_id`` called with fields of this response's body."""
    return {
        "operationId": operation_id,
        "parameters": {name: f"$response.body#/{field}" for name, field in parameters.items()},
    }


# What a created subscription's id leads to.
SUBSCRIPTION_LINKS = {
    "get": _link("getSubscription", id="id"),
    "replace": _link("replaceSubscription", id="id"),
    "update": _link("updateSubscription", id="id"),
    "delete": _link("deleteSubscription", id="id"),
    "history": _link("subscriptionHistory", id="id"),
    "ingest": _link("ingest", subscription_id="id"),
}


def _subscription_paths() -> dict[str, Any]:
    sub_id = _path_param("id", "Subscription id.")
    created = _ok("The subscription, with its secret.", _ref("Subscription"))
    created["links"] = SUBSCRIPTION_LINKS
    return {
        "/api/subscriptions/": {
            "post": {
                "summary": "Create a subscription",
                "operationId": "createSubscription",
                "tags": ["subscriptions"],
                "security": API_KEY,
                "requestBody": {
                    "required": True,
                    "content": _json_content(_ref("SubscriptionCreate")),
                },
                "responses": {
                    "201": created,
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "503": KAFKA_DOWN,
                },
            },
            "get": {
                "summary": "List subscriptions in (created_at, id) order",
                "operationId": "listSubscriptions",
                "tags": ["subscriptions"],
                "security": API_KEY,
                "parameters": [_limit(50), CURSOR],
                "responses": {
                    "200": _ok("A page.", _ref("SubscriptionList")),
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "503": KAFKA_DOWN,
                },
            },
        },
        "/api/subscriptions/{id}/": {
            "parameters": [sub_id],
            "get": {
                "summary": "Get a subscription",
                "operationId": "getSubscription",
                "tags": ["subscriptions"],
                "security": API_KEY,
                "responses": {
                    "200": _ok("The subscription.", _ref("Subscription")),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            },
            "put": _subscription_write(
                "Replace a subscription (omitted fields take their defaults; an omitted "
                "secret_key keeps the current secret)",
                "replaceSubscription",
                "SubscriptionCreate",
            ),
            "patch": _subscription_write(
                "Update the given fields", "updateSubscription", "SubscriptionPatch"
            ),
            "delete": {
                "summary": "Delete a subscription (tombstone on the topic)",
                "operationId": "deleteSubscription",
                "tags": ["subscriptions"],
                "security": API_KEY,
                "responses": {
                    "204": {"description": "Deleted."},
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                    "503": KAFKA_DOWN,
                },
            },
        },
    }


def _ingest_paths() -> dict[str, Any]:
    return {
        "/api/ingest/{subscription_id}/": {
            "post": {
                "summary": "Accept one webhook for one subscription",
                "description": "The body is the payload (any JSON). 202 only once Kafka "
                "acknowledged the record. With a subscription secret, "
                "X-Hub-Signature-256 over the exact body bytes is required "
                "(or an API key).",
                "operationId": "ingest",
                "tags": ["ingest"],
                "security": [{"hubSignature": []}, {"bearerAuth": []}, {}],
                "parameters": [
                    _path_param("subscription_id", "Target subscription."),
                    _query("event_type", "Event type of the webhook.", EVENT_TYPE, required=True),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "Stored in the record's metadata.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": _json_content({"description": "Any JSON value."}),
                },
                "responses": {
                    "202": {
                        **_ok("Accepted and acknowledged by Kafka.", _ref("IngestAccepted")),
                        "links": {"status": _link("webhookStatus", webhook_id="id")},
                    },
                    "400": _error(
                        "Body not JSON, event_type missing or not accepted by the "
                        "subscription, or signature missing."
                    ),
                    "401": _error("Wrong signature, or no valid API key where one is needed."),
                    "404": NOT_FOUND,
                    "409": _error("The subscription is inactive (error: subscription_inactive)."),
                    "413": _error("The body exceeds WM_MAX_BODY_BYTES."),
                    "503": KAFKA_DOWN,
                },
            },
        },
        "/api/events/": {
            "post": {
                "summary": "Fan one event out to every matching active subscription",
                "operationId": "fanOut",
                "tags": ["ingest"],
                "security": API_KEY,
                "requestBody": {"required": True, "content": _json_content(_ref("FanoutEvent"))},
                "responses": {
                    "202": _ok(
                        "Every record acknowledged (ids may be empty).", _ref("FanoutAccepted")
                    ),
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "413": _error("The body exceeds WM_MAX_BODY_BYTES."),
                    "503": KAFKA_DOWN,
                },
            },
        },
    }


def _status_paths() -> dict[str, Any]:
    list_ok = _ok("A page.", _ref("WebhookList"))
    return {
        "/api/status/{webhook_id}/": {
            "get": {
                "summary": "Status and delivery attempts of one webhook",
                "operationId": "webhookStatus",
                "tags": ["status"],
                "security": API_KEY,
                "parameters": [_path_param("webhook_id", "Webhook id.", uuid=False)],
                "responses": {
                    "200": _ok("The webhook.", _ref("WebhookStatus")),
                    "401": UNAUTHORIZED,
                    "404": _error("Unknown webhook."),
                },
            },
        },
        "/api/subscriptions/{id}/history/": {
            "get": {
                "summary": "Webhooks of one subscription, newest first",
                "operationId": "subscriptionHistory",
                "tags": ["status"],
                "security": API_KEY,
                "parameters": [_path_param("id", "Subscription id."), _limit(20), CURSOR],
                "responses": {
                    "200": list_ok,
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            },
        },
        "/api/webhooks/": {
            "get": {
                "summary": "Search webhooks",
                "operationId": "listWebhooks",
                "tags": ["status"],
                "security": API_KEY,
                "parameters": [
                    _query("status", "Only this status.", {"enum": [s.value for s in Status]}),
                    _query(
                        "subscription_id",
                        "Only this subscription.",
                        {"type": "string", "format": "uuid"},
                    ),
                    _query("event_type", "Only this event type (empty: any).", {"type": "string"}),
                    _query("since", "Only webhooks created at or after this time.", DATE_TIME),
                    _limit(20),
                    CURSOR,
                ],
                "responses": {"200": list_ok, "400": BAD_REQUEST, "401": UNAUTHORIZED},
            },
        },
    }


def _operations_paths() -> dict[str, Any]:
    probe = _ok("Status.", _ref("Probe"))
    return {
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "tags": ["operations"],
                "responses": {"200": probe},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: Kafka producer connected and subscription table loaded",
                "operationId": "readyz",
                "tags": ["operations"],
                "responses": {"200": probe, "503": _ok("Not ready.", _ref("Probe"))},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "responses": {"200": _ok("OpenAPI 3.1 document.", {"type": "object"})},
            }
        },
        "/swagger/": {
            "get": {
                "summary": "Swagger UI for this document",
                "operationId": "swaggerUi",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "HTML page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/swagger/assets/{name}": {
            "get": {
                "summary": f"A Swagger UI {SWAGGER_UI_VERSION} file of the page",
                "operationId": "swaggerUiAsset",
                "tags": ["operations"],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "File name.",
                        "schema": {"enum": sorted(SWAGGER_ASSETS)},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            kind: {"schema": {"type": "string"}}
                            for kind in sorted(set(SWAGGER_ASSETS.values()))
                        },
                    },
                    "404": _error("No such file."),
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document of the gateway."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WebhookMaster gateway",
            "version": __version__,
            "description": "Ingest, subscription and status API. Errors are JSON: "
            '{"error": <code>, "detail": <text>, "field"?: <name>}. Any '
            "request may also be answered 408 request_timeout (not received "
            "whole within WM_REQUEST_READ_TIMEOUT), 431 "
            "header_fields_too_large (request line or a header over 8190 "
            "bytes, or over 128 headers) or 400 bad_request (malformed HTTP).",
        },
        "paths": {
            **_operations_paths(),
            **_subscription_paths(),
            **_ingest_paths(),
            **_status_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of WM_API_KEYS (when configured).",
                },
                "hubSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Hub-Signature-256",
                    "description": "sha256=<hex HMAC-SHA256(secret, raw body)>.",
                },
            },
        },
    }


SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>WebhookMaster gateway API</title>
  <link rel="icon" type="image/png" href="/swagger/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/swagger/assets/favicon-16x16.png" sizes="16x16">
  <link rel="stylesheet" href="/swagger/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui",
                                 validatorUrl: null});
  </script>
  <noscript>The API description is at <a href="/api/openapi.json">/api/openapi.json</a>.
  </noscript>
</body>
</html>
"""


def setup(app: web.Application) -> None:
    """Register ``/api/openapi.json``, ``/swagger/`` and ``/swagger/assets/{name}``."""
    body = orjson.dumps(document())

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=JSON)

    async def swagger(request: web.Request) -> web.Response:
        return web.Response(text=SWAGGER_PAGE, content_type="text/html")

    async def swagger_asset(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in SWAGGER_ASSETS:
            raise ApiError(404, "not_found", "no such Swagger UI file")
        return web.FileResponse(
            swagger_ui_path / name, headers={"Content-Type": SWAGGER_ASSETS[name]}
        )

    app.router.add_get("/api/openapi.json", openapi_json, name="openapi", allow_head=False)
    app.router.add_get("/swagger/", swagger, name="swagger", allow_head=False)
    app.router.add_get(
        "/swagger/assets/{name}", swagger_asset, name="swagger_asset", allow_head=False
    )
