"""Fan-out through the gateway, end to end: one record per event whatever its width, one
delivery per subscriber, and an event id sent again never fanned out twice."""

from __future__ import annotations

from prometheus_client import REGISTRY

from schemas import records
from tests.support.gateway import running_gateway
from tests.support.pipeline import running
from tests.support.receiver import Receiver
from tests.support.waiting import eventually
from webhookmaster.settings import Settings

WAIT = 60.0
DROPPED = "webhookmaster_duplicates_dropped_total"


def dropped() -> float:
    return REGISTRY.get_sample_value(DROPPED) or 0.0


async def test_fan_out_delivers_once_per_subscriber_and_a_repeated_event_id_once(
    settings: Settings, receiver: Receiver
) -> None:
    async with (
        running_gateway(settings) as gateway,
        running_gateway(settings) as another,
        running(settings, scheduler=False),
    ):
        subs = [
            (await gateway.create_subscription(target_url=receiver.url("/fan")))["id"]
            for _ in range(6)
        ]
        other = await gateway.create_subscription(
            target_url=receiver.url("/other"), event_types=["user.created"]
        )
        assert other["id"] not in subs
        before = dropped()
        event = {"event_type": "order.created", "payload": {"order": 7}, "event_id": "order-7"}
        replayed = []
        for gw in (gateway, gateway, another):  # a client that retries the same event
            reply = await gw.call("POST", "/api/events/", json_body=event)
            assert reply.status == 202, reply.body
            assert reply.json == {"event_id": "order-7", "status": "accepted"}
            replayed.append(reply.headers.get("Idempotent-Replayed"))
        # the gateway that accepted it answers a retry at once; another one produces it again,
        # and the agent drops each subscriber's copy
        assert replayed == [None, "true", None]
        assert await receiver.wait_for(lambda: len(receiver.on("/fan")) == len(subs), WAIT)
        assert await eventually(lambda: dropped() - before == len(subs), timeout=WAIT)
    assert dict(receiver.ids("/fan")) == {records.derived_id("order-7", s): 1 for s in subs}
    assert receiver.on("/other") == []
