"""The small HTTP server every component runs: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    generate_latest,
)

from webhookmaster import __version__

# ``webhookmaster_component_info{component="agent",version="0.1.0"} 1``: the alert rules and the
# dashboard join on it (``on (job, instance) group_left (component)``), so they need no
# scrape-side ``component`` label (Kubernetes annotation scraping adds none).
COMPONENT_INFO = Gauge(
    "webhookmaster_component_info",
    "Always 1; labels: the component this process runs and the WebhookMaster version.",
    ["component", "version"],
)


def announce_component(name: str) -> None:
    """Export ``webhookmaster_component_info{component=name}`` from this process."""
    COMPONENT_INFO.labels(name, __version__).set(1)


def metrics_handler(
    registry: CollectorRegistry = REGISTRY,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return metrics


# What ``/readyz`` asks: set by :func:`add_health_routes` (or by an app that registers the
# handlers below itself).
READY: web.AppKey[Callable[[], bool]] = web.AppKey("ready")


async def healthz(request: web.Request) -> web.Response:
    """``/healthz``: alive while the process answers."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """``/readyz``: 200 when the app's ``READY`` check passes, else 503."""
    if request.app[READY]():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready"}, status=503)


def add_health_routes(
    app: web.Application, ready: Callable[[], bool], registry: CollectorRegistry = REGISTRY
) -> None:
    """Add the three routes to ``app``; ``ready()`` decides the answer of ``/readyz``."""
    app[READY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(registry))


async def serve(host: str, port: int, ready: Callable[[], bool]) -> web.AppRunner:
    """Start a server with only the health routes; returns its runner (``await
    runner.cleanup()`` to stop)."""
    app = web.Application()
    add_health_routes(app, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
