"""Issue 9 on the delivery side, on the real broker with a real receiver: no record can hold a
partition, hostile records are dead-lettered with their raw bytes, and the bytes accepted are
the bytes delivered and signed (big integers, duplicate keys, whitespace, escapes, depth)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from standardwebhooks.webhooks import Webhook as StandardWebhook

from delivery_agents import http_delivery
from delivery_agents.agent import GROUP_ID as AGENTS_GROUP
from schemas import records
from schemas.topics import DEAD_LETTER, INGEST
from status_projector.main import serve as serve_projector
from tests.support.gateway import running_gateway
from tests.support.pipeline import (
    create_subscription,
    delete_subscription,
    ingest_record,
    produce_ingest,
    running,
)
from tests.support.receiver import Receiver, Reply
from tests.support.records import produce
from tests.support.topics import read
from tests.support.waiting import eventually
from webhookmaster import signing
from webhookmaster.kafka_clients import admin_client, client_config
from webhookmaster.settings import Settings

WAIT = 60.0
# Valid JSON that a parse-and-serialise pipeline alters: an integer beyond 64 bits, a number
# beyond a double, duplicate keys, odd whitespace, escapes (a lone surrogate included).
TRICKY = (
    b'{ "big" : 123456789012345678901234567890, "dup": 1, "dup": 2,\n'
    b'  "huge": 1e400, "esc": "caf\\u00e9 \\ud83d\\ude00 \\ud800", "raw": "caf\xc3\xa9",'
    b'\t"list": [ 1 ,2 ] }  '
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b'{"deep": true}' + b"]" * depth


def produce_raw(
    settings: Settings,
    value: bytes,
    headers: list[tuple[str, bytes]],
    key: str,
    partition: int | None = None,
) -> None:
    """A direct producer's record in the header form."""
    produce(settings, [(INGEST, key, value)], partition, headers)


def envelope(record: dict, payload: bytes) -> bytes:
    """``record`` as the JSON envelope with ``payload`` spliced in as exact text."""
    head = records.dumps({k: v for k, v in record.items() if k != "payload"})
    return head[:-1] + b', "payload": ' + payload + b"}"


def header_form(sub: str, event_type: str = "order.created", **extra: str) -> list:
    headers = [
        (records.H_EVENT_TYPE, event_type.encode()),
        (records.H_SUBSCRIPTION_ID, sub.encode()),
    ]
    headers += [(name, value.encode()) for name, value in extra.items()]
    return headers


async def committed_to_end(settings: Settings, partition: int) -> bool:
    """True once the agents' group committed offset of ``partition`` of the ingest topic is its
    high watermark (bounded wait): nothing holds the partition."""
    topic = settings.topic(INGEST)
    group = settings.group(AGENTS_GROUP)
    admin = admin_client(settings)

    def check() -> tuple[int, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        futures = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])]
        )
        [result] = futures.values()
        [tp] = result.result(timeout=10).topic_partitions
        probe = Consumer(client_config(settings, {"group.id": "probe"}))
        try:
            _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        finally:
            probe.close()
        return tp.offset, high

    async def at_end() -> bool:
        committed, high = await asyncio.to_thread(check)
        return committed == high

    return bool(
        await eventually(
            at_end, timeout=WAIT, interval=0.2, what=f"partition {partition} committed to its end"
        )
    )


async def test_hostile_records_are_dead_lettered_and_the_partition_moves_on(
    settings: Settings, receiver: Receiver
) -> None:
    sub = create_subscription(settings, receiver.url("/p"))
    injected = ingest_record(sub, event_type="a\r\nX-Injected: yes")
    bad_id = ingest_record(sub, webhook_id="id\nwith-newline")
    deep_id = ingest_record(sub)
    good = ingest_record(sub)
    async with running(settings, scheduler=False):
        for value in (
            records.dumps(injected),
            records.dumps(bad_id),
            envelope(deep_id, nested(600)),
        ):
            produce_raw(settings, value, [], sub, partition=0)
        produce_raw(settings, b'{"a": 1}', header_form(sub, "nul\x00type"), sub, partition=0)
        produce_raw(settings, b"{not json", header_form(sub), sub, partition=0)
        produce_raw(settings, records.dumps(good), [], sub, partition=0)
        assert await receiver.wait_for(lambda: len(receiver.on("/p")) == 2, WAIT)
        letters = await read(settings, DEAD_LETTER, 4)
        assert await committed_to_end(settings, 0)
    deep, last = receiver.on("/p")
    assert deep.headers["webhook-id"] == deep_id["webhook_id"] and deep.body == nested(600)
    assert last.headers["webhook-id"] == good["webhook_id"]
    reasons = sorted(letter["reason"] for letter in letters)
    assert [r.split(":")[0] for r in reasons] == ["unreadable record"] * 4
    assert any("event_type must be printable" in r for r in reasons)
    assert any("webhook_id must be printable" in r for r in reasons)
    assert any("not one JSON document" in r for r in reasons)
    assert any(letter["raw"] == "{not json" and letter["source"]["headers"] for letter in letters)
    assert not any("X-Injected" in str(hit.headers) for hit in receiver.hits)


async def test_an_unexpected_error_ends_in_a_dead_letter_not_an_open_offset(
    settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = create_subscription(settings, receiver.url("/e"))
    doomed, good = ingest_record(sub), ingest_record(sub)
    real = http_delivery.headers_for

    def failing(webhook_id: str, *args: object) -> dict[str, str]:
        if webhook_id == doomed["webhook_id"]:
            raise RuntimeError("boom")
        return real(webhook_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(http_delivery, "headers_for", failing)
    async with running(settings, scheduler=False):
        produce_raw(settings, records.dumps(doomed), [], sub, partition=0)
        produce_raw(settings, records.dumps(good), [], sub, partition=0)
        assert await receiver.wait_for(lambda: len(receiver.on("/e")) == 1, WAIT)
        [letter] = await read(settings, DEAD_LETTER, 1)
        assert await committed_to_end(settings, 0)
    assert letter["reason"] == "processing failed: RuntimeError: boom"
    assert letter["raw"] == records.dumps(doomed).decode()
    assert receiver.on("/e")[0].headers["webhook-id"] == good["webhook_id"]


async def test_direct_records_are_delivered_byte_for_byte_and_signed_over_those_bytes(
    settings: Settings, receiver: Receiver
) -> None:
    secret = signing.new_secret()
    sub = create_subscription(settings, receiver.url("/exact"), secret=secret)
    receiver.script("/exact", Reply(500), Reply(500))  # the first two attempts fail: retried
    as_headers = "hdr-" + records.derived_id("a", "b")
    as_envelope = ingest_record(sub, webhook_id="env-" + records.derived_id("c", "d"))
    async with running(settings):
        produce_raw(settings, TRICKY, header_form(sub, **{records.H_WEBHOOK_ID: as_headers}), sub)
        produce_raw(settings, envelope(as_envelope, TRICKY), [], sub)
        assert await receiver.wait_for(lambda: len(receiver.on("/exact")) == 4, WAIT)
    hits = receiver.on("/exact")
    assert {h.headers["webhook-id"] for h in hits} == {as_headers, as_envelope["webhook_id"]}
    # the header form delivers the value as it is; the envelope, its payload member's value
    expected = {as_headers: TRICKY, as_envelope["webhook_id"]: TRICKY.strip()}
    verifier = StandardWebhook(secret)
    for hit in hits:
        assert hit.body == expected[hit.headers["webhook-id"]]
        verifier.verify(hit.body, {k.lower(): v for k, v in hit.headers.items()})


async def test_gateway_ingest_and_fan_out_deliver_the_accepted_bytes(
    settings: Settings, receiver: Receiver
) -> None:
    async with running_gateway(settings) as gateway, running(settings, scheduler=False):
        sub = await gateway.create_subscription(
            target_url=receiver.url("/gw"), event_types=["exact"]
        )
        deep = nested(1000)
        for body in (TRICKY, deep):
            reply = await gateway.ingest(sub, body, event_type="exact")
            assert reply.status == 202, reply.body
        too_deep = await gateway.ingest(sub, nested(1030), event_type="exact")
        assert too_deep.status == 400 and too_deep.json["error"] == "validation_error"
        fan = await gateway.call(
            "POST", "/api/events/", data=(b'{"payload" :  ' + TRICKY + b', "event_type": "exact"}')
        )
        assert fan.status == 202, fan.body
        twice = await gateway.call(
            "POST", "/api/events/", data=(b'{"event_type": "exact", "payload": 1, "payload": 2}')
        )
        assert twice.status == 400 and twice.json["error"] == "validation_error"
        assert await receiver.wait_for(lambda: len(receiver.on("/gw")) == 3, WAIT)
    assert sorted(h.body for h in receiver.on("/gw")) == sorted([TRICKY, deep, TRICKY.strip()])


async def test_a_replay_after_the_subscription_is_gone_leaves_delivered_webhooks_delivered(
    settings: Settings, receiver: Receiver, db: asyncpg.Connection
) -> None:
    sub = create_subscription(settings, receiver.url("/replay"))
    batch = [ingest_record(sub) for _ in range(50)]
    ids = [r["webhook_id"] for r in batch]
    stop = asyncio.Event()
    projector = asyncio.create_task(serve_projector(settings, stop, port=0))
    try:
        async with running(settings, scheduler=False):
            produce_ingest(settings, *batch)
            assert await receiver.wait_for(lambda: len(receiver.hits) == 50, WAIT)

        delivered = "SELECT count(*) FROM webhooks WHERE id = ANY($1) AND status = 'DELIVERED'"
        assert await eventually(lambda: _counted(db, delivered, ids, 50), timeout=WAIT)
        delete_subscription(settings, sub)
        # The agents' group rewinds, as after a crash before its commit: every record is
        # redelivered, now to a subscription that no longer exists.
        await asyncio.to_thread(rewind_agents, settings)
        async with running(settings, scheduler=False):
            letters = await read(settings, DEAD_LETTER, 50)
        assert {letter["webhook_id"] for letter in letters} == set(ids)

        recorded = "SELECT count(*) FROM dead_letters WHERE webhook_id = ANY($1)"
        assert await eventually(lambda: _counted(db, recorded, ids, 50), timeout=WAIT)
    finally:
        stop.set()
        assert await asyncio.wait_for(projector, 30) == 0
    rows = await db.fetch("SELECT status, delivered_at FROM webhooks WHERE id = ANY($1)", ids)
    assert len(rows) == 50
    assert all(r["status"] == "DELIVERED" and r["delivered_at"] is not None for r in rows)


def rewind_agents(settings: Settings) -> None:
    """Set the agents' group back to the start of every ingest partition (no member running)."""
    topic = settings.topic(INGEST)
    admin = admin_client(settings)
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    request = ConsumerGroupTopicPartitions(
        settings.group(AGENTS_GROUP), [TopicPartition(topic, p, 0) for p in partitions]
    )
    for future in admin.alter_consumer_group_offsets([request]).values():
        future.result(timeout=30)


async def _counted(db: asyncpg.Connection, count_sql: str, ids: list[str], want: int) -> bool:
    """Whether ``count_sql`` (a count over the ids ``$1``) counts ``want``."""
    return await db.fetchval(count_sql, ids) == want
