"""The gateway's Prometheus metrics (default registry, served at ``/metrics``)."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "webhookmaster_gateway_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
INGEST_SECONDS = Histogram(
    "webhookmaster_gateway_ingest_seconds",
    "Time from request start to an accepted (202) answer; kind is 'ingest' or 'fanout'.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRODUCE_SECONDS = Histogram(
    "webhookmaster_gateway_produce_seconds",
    "Time from produce to Kafka acknowledgement (acks=all), by topic.",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRODUCE_ERRORS = Counter(
    "webhookmaster_gateway_produce_errors_total",
    "Records Kafka did not acknowledge (error or timeout), by topic.",
    ["topic"],
)
for _topic in ("ingest", "subscriptions"):  # exported at 0: rate() sees the first error
    PRODUCE_ERRORS.labels(_topic)
DB_UP = Gauge(
    "webhookmaster_gateway_db_up",
    "1 when the status API's PostgreSQL answered the last query or ping, else 0.",
)
PAYLOAD_BYTES = Histogram(
    "webhookmaster_gateway_payload_bytes",
    "Size of accepted ingest request bodies (bytes).",
    buckets=(64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
)

UNMATCHED = "unmatched"


def route_label(request: web.Request) -> str:
    """The route template (``/api/ingest/{subscription_id}/``), or 'unmatched'."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by route, method and status."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        _requests(route_label(request), request.method, status).inc()


@functools.lru_cache(maxsize=1024)
def _requests(route: str, method: str, status: int) -> Any:
    """The requests counter's child for these labels, kept (a label look-up per request is a
    measurable share of the gateway's CPU)."""
    return REQUESTS.labels(route, method, str(status))
