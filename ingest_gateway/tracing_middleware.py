"""The server span of every API request when tracing is on (``WM_TRACING``): it continues the
caller's ``traceparent`` header, and ingest's produce span (ingest_api) is its child."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from webhookmaster import tracing


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    attributes = {"http.request.method": request.method, "http.route": route}
    with tracing.span(
        f"{request.method} {route}", "server", request.headers.get(tracing.HEADER), attributes
    ):
        response = await handler(request)
        tracing.annotate({"http.response.status_code": response.status})
        return response
