"""The gateway's aiohttp application: routes (from :mod:`ingest_gateway.routes`), middlewares, and
the Kafka resources' lifecycle.

At startup the app creates the producer and the subscription table and starts two background
tasks: one loads the table to the end (then it keeps following the topic) and then rewrites the
records whose secret is not yet encrypted under the newest key; one probes Kafka every couple of
seconds. ``/readyz`` is 200 once both are fine. The server answers meanwhile; routes that need the
table answer 503 (``not_ready``) until it is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from ingest_gateway import replay, routes, secret_migration, status_api
from ingest_gateway.auth import api_key_middleware
from ingest_gateway.errors import error_middleware
from ingest_gateway.metrics import metrics_middleware
from ingest_gateway.producing import producer_extra
from ingest_gateway.state import GATEWAY, Gateway
from ingest_gateway.tracing_middleware import tracing_middleware
from webhookmaster.health_server import READY
from webhookmaster.kafka_clients import AsyncProducer, producer_config
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import SubscriptionTable

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
# The table loader waits in slices so that shutdown never waits long for an executor thread.
LOAD_SLICE_S = 0.5

TABLE_LOADER = web.AppKey("table_loader", asyncio.Task)


class TableLoadError(RuntimeError):
    """The subscription table could not be loaded in time."""


def create_app(settings: Settings) -> web.Application:
    """The gateway application (Kafka resources start with the app)."""
    gw = Gateway.from_settings(settings)
    middlewares: list[Middleware] = [metrics_middleware, error_middleware]
    if settings.tracing:
        middlewares.insert(0, tracing_middleware)
    if gw.api_keys:
        middlewares.append(api_key_middleware(gw.api_keys))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[GATEWAY] = gw
    app.cleanup_ctx.append(kafka_resources)
    app[READY] = gw.ready
    status_api.add_pool(app, settings)
    replay.setup(app)  # after the pool: running replay jobs stop before it closes
    routes.register(app)  # every route of the table, and the OpenAPI document of it
    return app


async def kafka_resources(app: web.Application) -> AsyncIterator[None]:
    """Producer and table for the app's lifetime; on exit flush the producer, close the table."""
    gw = app[GATEWAY]
    loop = asyncio.get_running_loop()
    gw.producer = AsyncProducer(producer_config(gw.settings, **producer_extra(gw.settings)))
    gw.table = SubscriptionTable(gw.settings)
    loader = asyncio.create_task(_load_table(gw), name="subscription-table-load")
    app[TABLE_LOADER] = loader
    prober = asyncio.create_task(_probe_kafka(gw), name="kafka-probe")
    try:
        yield
    finally:
        for task in (loader, prober):
            task.cancel()
        for task in (loader, prober):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        gw.kafka_ok = False
        gw.update_ready()
        await loop.run_in_executor(None, gw.producer.close)
        await loop.run_in_executor(None, gw.table.close)


async def _load_table(gw: Gateway) -> None:
    """Read the subscriptions topic to its end, within WM_TABLE_LOAD_TIMEOUT."""
    loop = asyncio.get_running_loop()
    timeout = gw.settings.table_load_timeout_s
    deadline = loop.time() + timeout
    try:
        await loop.run_in_executor(None, gw.table.start)
    except Exception as exc:
        raise TableLoadError(f"cannot read {gw.table.topic}: {exc}") from exc
    while not await loop.run_in_executor(None, gw.table.wait_loaded, LOAD_SLICE_S):
        if loop.time() > deadline:
            raise TableLoadError(f"{gw.table.topic} not loaded within {timeout:.0f} s")
    log.info("subscription table loaded from %s", gw.table.topic)
    gw.update_ready()
    await secret_migration.rewrite_stale(gw)  # never raises; the gateway serves meanwhile


async def _probe_kafka(gw: Gateway) -> None:
    """Keep ``gw.kafka_ok`` current: does the cluster answer a metadata request? While it does
    not, writes fail fast (``gw.kafka_down``) and the records still in the producer's local
    queue are purged: their requests get their 503 now rather than at the message timeout."""
    loop = asyncio.get_running_loop()
    while True:
        ok = await loop.run_in_executor(
            None, gw.producer.connected, PROBE_TIMEOUT_S, gw.ingest_topic
        )
        if ok != gw.kafka_ok:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "Kafka %s",
                "answers" if ok else "does not answer",
            )
        gw.kafka_ok = ok
        gw.kafka_down = not ok
        if not ok:
            gw.producer.purge_queued()
        gw.update_ready()
        await asyncio.sleep(PROBE_INTERVAL_S)


async def wait_ready(app: web.Application, timeout: float) -> None:
    """Wait until the app is ready; raise the loader's error, or TimeoutError."""
    gw = app[GATEWAY]
    loader = app[TABLE_LOADER]
    async with asyncio.timeout(timeout):
        ready = asyncio.ensure_future(gw.ready_event.wait())
        try:
            await asyncio.wait({ready, loader}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                loader.result()  # raises the load error; else readiness follows the probe
                await ready
        finally:
            ready.cancel()
