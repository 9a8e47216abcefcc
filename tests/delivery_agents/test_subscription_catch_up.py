"""Read-your-writes for a process that meets a subscription its table has not read yet: a
webhook ingested right after its subscription was created must be delivered, not dead-lettered
as "does not exist" (found by the real-Prometheus test)."""

from __future__ import annotations

import asyncio
import time

import pytest

import delivery_agents.main
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest, running
from tests.support.receiver import Receiver
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import SubscriptionTable

WAIT_S = 60.0


async def test_wait_caught_up_returns_once_a_record_written_before_it_is_applied(
    settings: Settings,
) -> None:
    table = SubscriptionTable(settings)
    try:
        table.start()
        assert await asyncio.to_thread(table.wait_loaded, WAIT_S)
        ids = [create_subscription(settings, f"http://127.0.0.1:9/{i}") for i in range(20)]
        assert await asyncio.to_thread(table.wait_caught_up, WAIT_S)
        assert all(table.get(sub_id) is not None for sub_id in ids)
    finally:
        table.close()


class LaggingTable(SubscriptionTable):
    """A table whose follower applies each new subscription half a second late, as a process
    behind on a busy subscriptions topic would."""

    def _apply_message(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if self.loaded:
            time.sleep(0.5)
        super()._apply_message(key, value, offset)


async def test_a_webhook_ingested_right_after_its_subscription_is_delivered(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each webhook ends delivered or dead-lettered: 30 distinct deliveries mean none was
    refused for a subscription the agent's table had not read yet."""
    monkeypatch.setattr(delivery_agents.main, "SubscriptionTable", LaggingTable)
    warm_up = create_subscription(settings, receiver.url("/warm-up"))  # read at start: no lag
    async with running(settings, scheduler=False):
        produce_ingest(settings, ingest_record(warm_up))
        assert await receiver.wait_for(lambda: len(receiver.hits) == 1, WAIT_S)  # consuming
        receiver.hits.clear()
        for round_ in range(3):
            sub = create_subscription(settings, receiver.url(f"/new/{round_}"))
            produce_ingest(settings, *(ingest_record(sub, payload={"i": i}) for i in range(10)))
        assert await receiver.wait_for(lambda: len(receiver.hits) >= 30, WAIT_S), len(receiver.hits)
    assert len({hit.headers["webhook-id"] for hit in receiver.hits}) == 30
