"""``webhookmaster projector``: run the status projector until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from status_projector.consumer import ProjectorConsumer
from status_projector.store import Store
from webhookmaster import health_server, lifecycle
from webhookmaster.consumer_thread import FatalConsumerError
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, port: int | None = None
) -> int:
    """Project until SIGTERM/SIGINT (or ``stop`` is set); returns the exit code. ``/readyz``
    answers 200 once the consumer joined its group and while PostgreSQL answers."""
    loop = asyncio.get_running_loop()
    store = Store(settings)
    consumer = ProjectorConsumer(settings, store)
    runner = await health_server.serve(
        settings.health_host,
        settings.projector_port if port is None else port,
        lambda: consumer.joined and store.db_ok,
    )
    helpers = [loop.create_task(housekeeping(settings, store))]
    relay = lifecycle.on_stop(stop, consumer.stop)
    if relay is not None:
        helpers.append(relay)
    try:
        await consumer.run()
        log.info("status projector stopped")
        return 0
    except FatalConsumerError as exc:
        log.error("status projector stops: fatal Kafka error: %s", exc)
        return 1
    finally:
        for task in helpers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
        await runner.cleanup()


async def housekeeping(settings: Settings, store: Store) -> None:
    """Retention (and partitions ahead) every ``retention_interval_s``; a PostgreSQL ping
    every few seconds for ``/readyz``."""
    next_retention = 0.0
    loop = asyncio.get_running_loop()
    while True:
        if loop.time() >= next_retention:
            await store.retention()
            next_retention = loop.time() + settings.retention_interval_s
        await store.ping()
        await asyncio.sleep(PING_INTERVAL_S)
