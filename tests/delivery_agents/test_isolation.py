"""Slow endpoints keep to their share: a healthy subscription is delivered while many hang
(real broker, real loopback receiver)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from delivery_agents.shares import SLOW_SHARE
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest, running
from tests.support.receiver import Receiver, Reply
from webhookmaster.settings import Settings

WAIT = 90.0
SLOW_SUBS = 10
PER_SLOW = 40
HEALTHY = 100


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    # 64 slots, 8 per subscription: before shares, 8 hanging subscriptions took every slot and
    # 400 waiting records filled the agent's 256 held records, so nothing else was fetched
    return dataclasses.replace(
        wm_settings,
        allowed_cidrs="127.0.0.0/8",
        retry_ladder="1,1,1,1,1",
        request_timeout_s=120.0,
        connect_timeout_s=1.0,
        max_in_flight=64,
        max_in_flight_per_subscription=8,
    )


async def test_healthy_subscription_delivered_while_many_endpoints_hang(
    settings: Settings, receiver: Receiver
) -> None:
    release = asyncio.Event()
    slow_paths = [f"/slow/{k}" for k in range(SLOW_SUBS)]
    for path in slow_paths:
        receiver.script(path, then=Reply(hold=release))
    slow_subs = [create_subscription(settings, receiver.url(p)) for p in slow_paths]
    healthy = create_subscription(settings, receiver.url("/healthy"))
    # one partition: the slow subscriptions' 400 records first, the healthy ones behind them
    slow_records = [ingest_record(s) for _ in range(PER_SLOW) for s in slow_subs]
    produce_ingest(settings, *slow_records, partition=0)
    produce_ingest(settings, *(ingest_record(healthy) for _ in range(HEALTHY)), partition=0)
    async with running(settings, scheduler=False):
        try:
            assert await receiver.wait_for(lambda: len(receiver.on("/healthy")) == HEALTHY, WAIT), (
                f"healthy deliveries: {len(receiver.on('/healthy'))} of {HEALTHY}"
            )
            # every slow endpoint still holds its requests: each had its share, no more
            assert not release.is_set()
            for path in slow_paths:
                assert 1 <= len(receiver.on(path)) <= SLOW_SHARE, path
        finally:
            release.set()
        assert await receiver.wait_for(
            lambda: all(len(receiver.on(p)) == PER_SLOW for p in slow_paths), WAIT
        ), [len(receiver.on(p)) for p in slow_paths]
    assert len(receiver.on("/healthy")) == HEALTHY


@pytest.fixture
def backlog_settings(settings: Settings) -> Settings:
    # 8 slots: a backlog whose every delivery takes 50 ms keeps the agent saturated for ~15 s
    return dataclasses.replace(settings, max_in_flight=8, max_in_flight_per_subscription=8)


async def test_due_retry_delivered_before_the_backlog_drains(
    backlog_settings: Settings, receiver: Receiver
) -> None:
    settings = dataclasses.replace(backlog_settings, retry_ladder="2,1,1,1,1")
    backlog = 2_000 // settings.topic_partitions * settings.topic_partitions
    receiver.script("/backlog", then=Reply(delay_s=0.05))
    receiver.script("/retry", Reply(500))  # the first attempt fails; the retry (2 s) succeeds
    slow_sub = create_subscription(settings, receiver.url("/backlog"))
    retry_sub = create_subscription(settings, receiver.url("/retry"))
    async with running(settings):
        produce_ingest(settings, ingest_record(retry_sub))
        assert await receiver.wait_for(lambda: len(receiver.on("/retry")) == 1, WAIT)
        # while the retry waits its 2 s: a backlog on every partition (a retry handed back to
        # the ingest topic would queue behind it, whatever its partition)
        partitions = settings.topic_partitions
        for partition in range(partitions):
            share = [ingest_record(slow_sub) for _ in range(backlog // partitions)]
            produce_ingest(settings, *share, partition=partition)
        assert await receiver.wait_for(lambda: len(receiver.on("/retry")) == 2, WAIT)
        # the retry went round the scheduler and back while most of the backlog was still
        # queued (handed back to the ingest topic, it came after nearly all of it)
        delivered_before = len(receiver.on("/backlog"))
        assert delivered_before < backlog // 2, delivered_before
        assert await receiver.wait_for(lambda: len(receiver.on("/backlog")) >= backlog, WAIT * 2)
    first, second = receiver.on("/retry")
    assert second.at - first.at >= 2.0


PACED = 100
PACED_RATE = 1.0  # deliveries per second: the paced backlog takes 100 s to drain


@pytest.fixture
def paced_settings(settings: Settings) -> Settings:
    # 8 slots, 32 records in hand: before, 32 records waiting for their rate limit held them
    # all and nothing behind them was fetched; a short timeout bounds the stop's grace
    return dataclasses.replace(
        settings, max_in_flight=8, max_in_flight_per_subscription=8, request_timeout_s=10.0
    )


async def test_records_waiting_for_a_rate_limit_do_not_stop_the_fetching(
    paced_settings: Settings, receiver: Receiver
) -> None:
    settings = paced_settings
    paced = create_subscription(settings, receiver.url("/paced"), rate_limit=PACED_RATE)
    healthy = create_subscription(settings, receiver.url("/healthy"))
    # one partition: the paced subscription's records first, the healthy ones behind them
    produce_ingest(settings, *(ingest_record(paced) for _ in range(PACED)), partition=0)
    produce_ingest(settings, *(ingest_record(healthy) for _ in range(HEALTHY)), partition=0)
    async with running(settings, scheduler=False):
        assert await receiver.wait_for(lambda: len(receiver.on("/healthy")) == HEALTHY, WAIT), (
            f"healthy deliveries: {len(receiver.on('/healthy'))} of {HEALTHY}"
        )
        # fetched past the paced backlog: had its waiting records filled the agent's 32
        # records in hand, the healthy ones would have come after at least 68 paced ones
        assert len(receiver.on("/paced")) < PACED // 2, len(receiver.on("/paced"))
