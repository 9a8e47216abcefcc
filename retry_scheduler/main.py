"""``webhookmaster scheduler``: run the retry scheduler."""

from __future__ import annotations

import asyncio
import logging

from retry_scheduler.scheduler import Scheduler
from webhookmaster import health_server, lifecycle
from webhookmaster.kafka_clients import AsyncProducer, producer_config
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, port: int | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set). Returns the exit code."""
    loop = asyncio.get_running_loop()
    producer = AsyncProducer(producer_config(settings))
    scheduler = Scheduler(settings, producer)
    runner = await health_server.serve(
        settings.health_host,
        settings.scheduler_port if port is None else port,
        lambda: scheduler.consumer.subscribed,
    )
    relay = lifecycle.on_stop(stop, scheduler.stop)
    try:
        log.info(
            "retry scheduler ready: %s",
            ", ".join(f"{t.topic}={t.delay_s:g}s" for t in scheduler.ladder),
        )
        await scheduler.run()
        return 0
    finally:
        await loop.run_in_executor(None, producer.close)
        await runner.cleanup()
        if relay is not None:
            relay.cancel()
