"""The OpenAPI 3.1 document (``/api/openapi.json``), generated from the route table
(:mod:`ingest_gateway.routes`) and the body models (:mod:`ingest_gateway.api_models`): each
:class:`Route` is one operation, and the JSON Schemas of its bodies and parameters come from
their types through ``msgspec.json.schema_components``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web

from ingest_gateway.api_models import Error
from webhookmaster import __version__

JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DOCUMENT = web.AppKey("openapi_document", bytes)

# Security: the schemes an operation accepts. Every API credential is optional in the document
# (an empty requirement too), as the gateway asks for none unless WM_API_KEYS is set.
PUBLIC: tuple[str, ...] = ()
API_KEY = ("bearerAuth",)
SIGNATURE_OR_API_KEY = ("hubSignature", "bearerAuth")
SECURITY_SCHEMES = {
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
}
DESCRIPTION = (
    'Ingest, subscription and status API. Errors are JSON: {"error": <code>, "detail": <text>, '
    '"field"?: <name>}. Any request may also be answered 408 request_timeout (not received whole '
    "within WM_REQUEST_READ_TIMEOUT), 431 header_fields_too_large (request line or a header over "
    "8190 bytes, or over 128 headers) or 400 bad_request (malformed HTTP)."
)


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter; ``type`` gives its schema (a msgspec-able type)."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    type: Any = str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: ``operation_id`` called with fields of the response body
    (``parameters``: parameter name → body field)."""

    operation_id: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: ``body`` is the type of its content (None: no content)."""

    description: str
    body: Any = None
    media: tuple[str, ...] = (JSON,)
    retry_after: bool = False
    links: Mapping[str, Link] = field(default_factory=dict)


def error(description: str, retry_after: bool = False) -> Reply:
    """An error answer (an :class:`~ingest_gateway.api_models.Error` body)."""
    return Reply(description, Error, retry_after=retry_after)


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: how the gateway serves it and how the document describes it.

    ``body`` is the request body's type (None: no body; ``body_optional``: it may be left
    out); ``name`` the aiohttp resource name
    (what :data:`ingest_gateway.auth.PUBLIC_ROUTES` lists); ``head``: a GET also answers HEAD.
    """

    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Reply]
    security: tuple[str, ...] = API_KEY
    params: tuple[Param, ...] = ()
    body: Any = None
    description: str | None = None
    name: str | None = None
    head: bool = False
    body_optional: bool = False


def _types(routes: Iterable[Route]) -> list[Any]:
    """Every type the document gives a schema for (each once)."""
    found: dict[int, Any] = {}
    for route in routes:
        for kind in (
            *(param.type for param in route.params),
            route.body,
            *(reply.body for reply in route.responses.values()),
        ):
            if kind is not None:
                found.setdefault(id(kind), kind)
    return list(found.values())


Schemas = Callable[[Any], dict[str, Any]]


def _operation(route: Route, schema: Schemas) -> dict[str, Any]:
    """The operation object of ``route``; ``schema(t)`` is the schema of type ``t``."""
    op: dict[str, Any] = {"summary": route.summary}
    if route.description:
        op["description"] = route.description
    op["operationId"] = route.operation_id
    op["tags"] = [route.tag]
    if route.security:
        op["security"] = [{scheme: []} for scheme in route.security] + [{}]
    if route.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "description": p.description,
                "schema": schema(p.type),
            }
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": not route.body_optional,
            "content": {JSON: {"schema": schema(route.body)}},
        }
    op["responses"] = {
        str(status): _reply(reply, schema) for status, reply in route.responses.items()
    }
    return op


def _reply(reply: Reply, schema: Schemas) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.body is not None:
        answer["content"] = {media: {"schema": schema(reply.body)} for media in reply.media}
    if reply.retry_after:
        answer["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    if reply.links:
        answer["links"] = {
            name: {
                "operationId": link.operation_id,
                "parameters": {
                    param: f"$response.body#/{body_field}"
                    for param, body_field in link.parameters.items()
                },
            }
            for name, link in reply.links.items()
        }
    return answer


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``: one operation per route, bodies as components."""
    routes = list(routes)
    types = _types(routes)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_id = {id(kind): body for kind, body in zip(types, schemas, strict=True)}

    def schema(kind: Any) -> dict[str, Any]:
        return by_id[id(kind)]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schema)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WebhookMaster gateway",
            "version": __version__,
            "description": DESCRIPTION,
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


async def serve_document(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``: the document the app was set up with."""
    return web.Response(body=request.app[DOCUMENT], content_type=JSON)
