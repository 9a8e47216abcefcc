"""``webhookmaster agent``: run one delivery agent process."""

from __future__ import annotations

import asyncio
import logging

from delivery_agents.agent import GROUP_ID, Agent
from webhookmaster import health_server, lifecycle
from webhookmaster.kafka_clients import AsyncProducer, producer_config
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import SubscriptionTable

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, port: int | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set): load the subscription table, then
    deliver. Returns the exit code."""
    loop = asyncio.get_running_loop()
    table = SubscriptionTable(settings)
    producer = AsyncProducer(producer_config(settings))
    agent = Agent(settings, table, producer)
    runner = await health_server.serve(
        settings.health_host,
        settings.agent_port if port is None else port,
        lambda: table.loaded and agent.consumer.subscribed,
    )
    relay = lifecycle.on_stop(stop, agent.stop)
    try:
        table.start()
        if not await loop.run_in_executor(None, table.wait_loaded, settings.table_load_timeout_s):
            log.error("subscription table not loaded within %.0f s", settings.table_load_timeout_s)
            return 1
        log.info("delivery agent ready (group %s)", settings.group(GROUP_ID))
        await agent.run()
        return 0
    finally:
        await loop.run_in_executor(None, producer.close)
        table.close()
        await runner.cleanup()
        if relay is not None:
            relay.cancel()
