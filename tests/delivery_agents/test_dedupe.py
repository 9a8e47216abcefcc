"""De-duplication of marked first attempts (delivery_agents/dedupe.py) on the real broker: a
fan-out record expanded twice, an expansion redone after a crash before the commit, the state
after a restart (SIGKILL) and after a rebalance between two agent processes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from schemas import records
from schemas.topics import IDEMPOTENCY, INGEST
from tests.support.chaos import offset_gaps
from tests.support.fixtures_infra import MakeSubscription
from tests.support.fixtures_processes import MakeComponent
from tests.support.pipeline import create_subscription, ingest_record, produce_ingest, running
from tests.support.receiver import Receiver
from tests.support.topics import read_to_end
from tests.support.waiting import eventually
from webhookmaster.kafka_clients import PARTITIONER, client_config
from webhookmaster.settings import Settings

WAIT = 60.0
DROPPED = "webhookmaster_duplicates_dropped_total"


def dropped() -> float:
    """Duplicates dropped by the agents running in this process."""
    return REGISTRY.get_sample_value(DROPPED) or 0.0


def fan_out_event(event_id: str, event_type: str = "order.created") -> dict[str, Any]:
    payload = {"event": event_id}
    return ingest_record(None, payload=payload, event_type=event_type, webhook_id=event_id)


def produce_expansion(settings: Settings, event: dict[str, Any], sub_ids: list[str]) -> None:
    """What an agent's expansion of ``event`` produces (one marked record per subscription,
    keyed by it, with the derived id): as a killed agent left it, before its commit."""
    producer = Producer(client_config(settings, {"acks": "all", "partitioner": PARTITIONER}))
    for sub_id in sub_ids:
        one = records.Webhook(
            webhook_id=records.derived_id(event["webhook_id"], sub_id),
            subscription_id=sub_id,
            event_type=event["event_type"],
            body=orjson.dumps(event["payload"]),
            received_at=event["received_at"],
        )
        producer.produce(
            settings.topic(INGEST),
            one.body,
            sub_id,
            headers=[*one.headers(), records.IDEMPOTENT],
        )
    assert producer.flush(30) == 0


def per_webhook(receiver: Receiver, path: str) -> dict[str, int]:
    return dict(receiver.ids(path))


async def test_a_fan_out_record_expanded_twice_delivers_once(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    subs = [make_subscription(receiver.url("/fan")) for _ in range(4)]
    event = fan_out_event("event-twice")
    before = dropped()
    async with running(settings, scheduler=False):
        produce_ingest(settings, event, event)  # the same record consumed twice
        assert await eventually(lambda: dropped() - before == len(subs), timeout=WAIT)
        assert await receiver.wait_for(lambda: len(receiver.on("/fan")) == len(subs), WAIT)
    assert per_webhook(receiver, "/fan") == {records.derived_id("event-twice", s): 1 for s in subs}
    # each claim is on the idempotency topic, with the offset of the record that claimed it
    claims = await asyncio.to_thread(read_to_end, settings, settings.topic(IDEMPOTENCY))
    assert sorted(m.key().decode() for m in claims) == sorted(per_webhook(receiver, "/fan"))


async def test_an_expansion_redone_after_a_crash_before_the_commit_delivers_once(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    subs = [make_subscription(receiver.url("/redo")) for _ in range(5)]
    event = fan_out_event("event-redo")
    # a killed agent had produced the expansion but not committed the fan-out record: both
    # are on the ingest topic when the next agent starts
    produce_ingest(settings, event)
    await asyncio.to_thread(produce_expansion, settings, event, subs)
    before = dropped()
    async with running(settings, scheduler=False):
        assert await receiver.wait_for(lambda: len(receiver.on("/redo")) == len(subs), WAIT)
        assert await eventually(lambda: dropped() - before == len(subs), timeout=WAIT)
    assert set(per_webhook(receiver, "/redo").values()) == {1}


async def test_records_without_the_marker_are_never_dropped(
    settings: Settings, receiver: Receiver, make_subscription: MakeSubscription
) -> None:
    sub = make_subscription(receiver.url("/plain"))
    record = ingest_record(sub, webhook_id="same-id")  # an operator's resend, say
    before = dropped()
    async with running(settings, scheduler=False):
        produce_ingest(settings, record, record)
        assert await receiver.wait_for(lambda: len(receiver.on("/plain")) == 2, WAIT)
    assert dropped() == before


async def test_claims_survive_a_sigkill_and_a_rebalance(
    settings: Settings, receiver: Receiver, make_component: MakeComponent
) -> None:
    # 30 subscriptions: every partition holds some (a miss is (2/3)^30 with 3 partitions)
    subs = [create_subscription(settings, receiver.url("/kept")) for _ in range(30)]
    events = [fan_out_event(f"event-{i}") for i in range(3)]
    expected = {records.derived_id(e["webhook_id"], s): 1 for e in events for s in subs}
    group = settings.group("agents")
    first = make_component("agent", settings)
    await first.wait_ready()
    produce_ingest(settings, *events)
    assert await receiver.wait_for(lambda: len(receiver.on("/kept")) == len(expected), WAIT)
    # every record done and committed, then SIGKILL: the claims must come back from Kafka
    topics = [settings.topic(INGEST)]
    assert await eventually(lambda: not offset_gaps(settings, group, topics), timeout=WAIT)
    first.kill()
    again = make_component("agent", settings)
    await again.wait_ready()
    produce_ingest(settings, *events)  # a client retrying every event
    want = len(expected)
    assert await eventually(lambda: again.metric(DROPPED) == want, timeout=WAIT)
    # a second agent joins: partitions (and their claims) move between the two
    second = make_component("agent", settings)
    await second.wait_ready()
    assert await eventually(
        lambda: (
            min(
                again.metric("webhookmaster_assigned_partitions"),
                second.metric("webhookmaster_assigned_partitions"),
            )
            > 0
        ),
        timeout=WAIT,
    )
    produce_ingest(settings, *events)
    assert await eventually(
        lambda: again.metric(DROPPED) + second.metric(DROPPED) == 2 * want, timeout=WAIT
    )
    assert second.metric(DROPPED) > 0, "the second agent judged moved partitions"
    assert per_webhook(receiver, "/kept") == expected
    await asyncio.gather(again.terminate(), second.terminate())
