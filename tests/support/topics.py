"""The topic reader: records read from the start of a real topic, bounded in time, as messages
or decoded (``consume`` a count of them with a fresh group, ``read_to_end`` all there are)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from schemas import records
from schemas.topics import DUE, INGEST
from webhookmaster.kafka_clients import consumer_config
from webhookmaster.settings import Settings


def consume(settings: Settings, topic: str, count: int, timeout: float = 30.0) -> list[Message]:
    """Read ``count`` records from the start of ``topic`` with a fresh group, within ``timeout``."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            for msg in consumer.consume(count - len(records), timeout=0.5):
                if msg.error() is None:
                    records.append(msg)
    finally:
        consumer.close()
    return records


def read_to_end(settings: Settings, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record ``topic`` holds now (tombstones too), each partition read from its start to
    its high watermark at the call, by an assigned consumer (no group), within ``timeout``."""
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex}"))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts
        }
        positions = {p: low for p, (low, _) in marks.items()}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        while any(positions[p] < high for p, (_, high) in marks.items()):
            assert time.monotonic() < deadline, f"{topic} not read to its end: {positions}"
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    positions[msg.partition()] = msg.offset() + 1
                    found.append(msg)
        return found
    finally:
        consumer.close()


def webhook_view(msg: Message) -> dict[str, Any]:
    """A webhook record (either form) as a dict: its fields, ``body`` (the exact bytes) and
    ``payload`` (the body parsed, integers exact)."""
    record = records.parse_webhook(msg.value(), msg.headers(), "unused", "unused", check_body=False)
    view: dict[str, Any] = dict(record.to_json())
    view["body"] = record.body
    view["payload"] = json.loads(record.body)
    view["header_form"] = any(k == records.H_EVENT_TYPE for k, _ in msg.headers() or ())
    return view


async def read_topic(settings: Settings, suffix: str, count: int, timeout: float = 30.0) -> list:
    """``count`` records of ``<prefix><suffix>``, read in a thread (the loop keeps serving)."""
    return await asyncio.to_thread(consume, settings, settings.topic(suffix), count, timeout)


async def read(settings: Settings, suffix: str, count: int, timeout: float = 30) -> list[dict]:
    """The first ``count`` records of a topic, decoded: webhook records (ingest, retry tiers)
    as :func:`webhook_view`, the others as JSON."""
    msgs = await read_topic(settings, suffix, count, timeout)
    webhooks = suffix in (INGEST, DUE) or suffix.startswith("retry.")
    return [webhook_view(m) if webhooks else orjson.loads(m.value()) for m in msgs]
