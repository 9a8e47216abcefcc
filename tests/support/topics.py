"""The one topic reader: records read from the start of a real topic with a fresh consumer
group, bounded in time, as messages or decoded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Consumer, Message

from schemas import records
from schemas.topics import INGEST
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
    webhooks = suffix == INGEST or suffix.startswith("retry.")
    return [webhook_view(m) if webhooks else orjson.loads(m.value()) for m in msgs]
