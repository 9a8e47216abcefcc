"""Kafka stops under a ready gateway: writes answer 503 with Retry-After in bounded time, never
202. Uses a private broker on free ports (the session's shared broker is never stopped)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import clean_env
from tests.gateway_helpers import free_port, poll, run_cli, running_gateway, state_dir
from webhookmaster import settings as settings_mod
from webhookmaster import topics_admin
from webhookmaster.settings import Settings
from webhookmaster.stack import kafka_broker

# message.timeout.ms of the gateway (10 s) plus scheduling slack.
BOUND_S = 20.0


@pytest.fixture
def private_kafka(base_settings: Settings) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A second broker with its own state folder and ports, the catalogue applied."""
    state = state_dir(f"gw-kafka-{uuid.uuid4().hex[:8]}")
    env = clean_env(WM_STATE_DIR=str(state), WM_KAFKA_PORT=str(free_port()),
                    WM_KAFKA_CONTROLLER_PORT=str(free_port()), WM_PG_PORT=str(free_port()),
                    WM_CACHE_DIR=base_settings.cache_dir, WM_TOPIC_PARTITIONS="2")
    settings = settings_mod.load(env)
    try:
        kafka_broker.start(settings)
        topics_admin.ensure_topics(settings)
        yield settings, env
    finally:
        run_cli(env, "stack", "down")
        shutil.rmtree(state, ignore_errors=True)


def _produce_errors(text: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "webhookmaster_gateway_produce_errors_total")


async def _timed(coro) -> tuple[float, object]:
    started = time.monotonic()
    result = await coro
    return time.monotonic() - started, result


async def test_broker_down_gives_503_with_retry_after(
        private_kafka: tuple[Settings, dict[str, str]]) -> None:
    settings, env = private_kafka
    async with running_gateway(settings) as gw:
        sub = await gw.create_subscription()
        assert (await gw.ingest(sub, b'{"before": "down"}')).status == 202
        errors_before = _produce_errors((await gw.call("GET", "/metrics")).body.decode())

        down = await asyncio.to_thread(run_cli, env, "stack", "down")
        assert down.returncode == 0 and "kafka      stopped" in down.stdout, down.stderr
        assert not await asyncio.to_thread(kafka_broker.responds, settings, 1.0)

        async def writes() -> list:
            return await asyncio.gather(
                _timed(gw.ingest(sub, b'{"after": "down"}')),
                _timed(gw.call("POST", "/api/events/",
                               json_body={"event_type": "e", "payload": {}})),
                _timed(gw.call("POST", "/api/subscriptions/",
                               json_body={"target_url": "https://example.com/"})),
                _timed(gw.call("PATCH", f"/api/subscriptions/{sub['id']}/",
                               json_body={"is_active": False})),
            )

        for elapsed, reply in await asyncio.wait_for(writes(), BOUND_S + 10):
            assert elapsed < BOUND_S
            assert reply.status == 503, reply.body
            assert int(reply.headers["Retry-After"]) > 0
            assert reply.json["error"] == "kafka_unavailable"
        # the PATCH was not applied: nothing unacknowledged is ever visible
        assert (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).json == sub
        metrics = (await gw.call("GET", "/metrics")).body.decode()
        assert _produce_errors(metrics) >= errors_before + 4

        async def not_ready() -> bool:
            return (await gw.call("GET", "/readyz")).status == 503

        assert await poll(not_ready, timeout=15)
        assert (await gw.call("GET", "/readyz")).json == {"status": "not ready"}
