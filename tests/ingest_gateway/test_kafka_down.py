"""Kafka stops under a ready gateway: writes answer 503 with Retry-After in bounded time, never
202. Uses a private broker on free ports (the session's shared broker is never stopped)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack import kafka_broker
from tests.support.env import private_stack_env
from tests.support.gateway import LiveGateway, running_gateway
from tests.support.ports import free_port
from tests.support.processes import run_cli
from tests.support.waiting import eventually
from webhookmaster import settings as settings_mod
from webhookmaster.kafka_clients import AsyncProducer, ProduceError, producer_config
from webhookmaster.ops import topics_admin
from webhookmaster.settings import Settings

# message.timeout.ms of the gateway (10 s) plus scheduling slack.
BOUND_S = 20.0
# Once the gateway knows Kafka is down it answers at once: far below the 10 s message timeout.
FAST_S = 5.0
CLIENTS = 50


@pytest.fixture
def private_kafka(base_settings: Settings) -> Iterator[tuple[Settings, dict[str, str]]]:
    """A second broker with its own state folder and ports, the catalogue applied."""
    extra = {"WM_CACHE_DIR": base_settings.cache_dir, "WM_TOPIC_PARTITIONS": "2"}
    with private_stack_env("gw-kafka", **extra) as env:
        settings = settings_mod.load(env)
        try:
            kafka_broker.start(settings)
            topics_admin.ensure_topics(settings)
            yield settings, env
        finally:
            run_cli(env, "stack", "down")


def _produce_errors(text: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "webhookmaster_gateway_produce_errors_total"
    )


async def _not_ready(gw: LiveGateway) -> bool:
    return (await gw.call("GET", "/readyz")).status == 503


async def _timed(coro) -> tuple[float, object]:
    started = time.monotonic()
    result = await coro
    return time.monotonic() - started, result


async def test_broker_down_gives_503_with_retry_after(
    private_kafka: tuple[Settings, dict[str, str]],
) -> None:
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
                _timed(
                    gw.call("POST", "/api/events/", json_body={"event_type": "e", "payload": {}})
                ),
                _timed(
                    gw.call(
                        "POST",
                        "/api/subscriptions/",
                        json_body={"target_url": "https://example.com/"},
                    )
                ),
                _timed(
                    gw.call(
                        "PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"is_active": False}
                    )
                ),
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

        assert await eventually(lambda: _not_ready(gw), timeout=15)
        assert (await gw.call("GET", "/readyz")).json == {"status": "not ready"}


async def test_writes_fail_fast_once_kafka_is_known_down(
    private_kafka: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = private_kafka
    async with running_gateway(settings) as gw:
        sub = await gw.create_subscription()
        down = await asyncio.to_thread(run_cli, env, "stack", "down")
        assert down.returncode == 0, down.stderr

        assert await eventually(lambda: _not_ready(gw), timeout=15)
        writes = [gw.ingest(sub, b'{"n": %d}' % i) for i in range(CLIENTS)]
        writes += [
            gw.call("POST", "/api/events/", json_body={"event_type": "e", "payload": 1}),
            gw.call(
                "POST", "/api/subscriptions/", json_body={"target_url": "https://example.com/"}
            ),
            gw.call("DELETE", f"/api/subscriptions/{sub['id']}/"),
        ]
        results = await asyncio.wait_for(asyncio.gather(*(_timed(w) for w in writes)), BOUND_S + 10)
        for elapsed, reply in results:
            assert reply.status == 503, reply.body
            assert reply.json["error"] == "kafka_unavailable"
            assert int(reply.headers["Retry-After"]) > 0
            assert elapsed < FAST_S, elapsed
        assert (await gw.call("GET", f"/api/subscriptions/{sub['id']}/")).json == sub


async def test_purge_fails_queued_records_at_once(base_settings: Settings) -> None:
    """Records waiting in the producer's local queue for a broker that is not there fail as
    soon as they are purged, not at their (here 60 s) message timeout."""
    dead = dataclasses.replace(base_settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    producer = AsyncProducer(producer_config(dead, **{"message.timeout.ms": 60_000}))
    try:
        sends = [asyncio.ensure_future(producer.send("nowhere", b"x", "k")) for _ in range(20)]

        async def queued() -> bool:
            return len(producer._producer) >= 20

        assert await eventually(queued, timeout=10)
        assert not any(s.done() for s in sends)
        producer.purge_queued()
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), FAST_S)
        assert all(isinstance(r, ProduceError) for r in results), results
    finally:
        await asyncio.to_thread(producer.close, 1.0)
