"""``webhookmaster gateway``: serve the gateway until SIGTERM or SIGINT, then shut down gracefully
(stop accepting, finish requests in flight, flush the producer, close the table)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ingest_gateway.app import TABLE_LOADER, create_app
from ingest_gateway.http_server import HardenedAppRunner
from ingest_gateway.producing import MESSAGE_TIMEOUT_MS, QUEUE_WAIT_S
from webhookmaster import lifecycle
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

# Requests in flight may wait for an acknowledgement this long; shutdown lets them finish.
SHUTDOWN_TIMEOUT_S = MESSAGE_TIMEOUT_MS / 1000 + QUEUE_WAIT_S + 3.0
BACKLOG = 1024


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run the gateway until SIGTERM/SIGINT (or ``stop`` is set): exit code 0; or until the
    subscription table fails to load: exit code 1."""
    stopping = asyncio.Event()
    relay = lifecycle.on_stop(stop, stopping.set)
    runner = HardenedAppRunner(
        create_app(settings),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        read_timeout=settings.request_read_timeout_s,
    )
    await runner.setup()
    code = 0
    try:
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port, backlog=BACKLOG)
        await site.start()
        log.info("gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
        loader = runner.app[TABLE_LOADER]
        waiter = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiter, loader}, return_when=asyncio.FIRST_COMPLETED)
        if loader.done() and not loader.cancelled() and loader.exception() is not None:
            log.error("gateway cannot start: %s", loader.exception())
            code = 1
        else:
            await waiter
        waiter.cancel()
        log.info("gateway shutting down")
    finally:
        if relay is not None:
            relay.cancel()
        await runner.cleanup()
    return code
