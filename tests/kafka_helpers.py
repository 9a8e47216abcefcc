"""Small helpers for tests that read and write real topics."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Message

from schemas import records
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


def wait_for(check, timeout: float = 15.0, interval: float = 0.05) -> bool:
    """Poll ``check()`` until true or ``timeout``; returns its last value (for state that the
    broker propagates asynchronously, such as topic configs)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def webhook_view(msg: Message) -> dict[str, Any]:
    """A webhook record (either form) as a dict: its fields, ``body`` (the exact bytes) and
    ``payload`` (the body parsed, integers exact)."""
    record = records.parse_webhook(msg.value(), msg.headers(), "unused", "unused", check_body=False)
    view: dict[str, Any] = dict(record.to_json())
    view["body"] = record.body
    view["payload"] = json.loads(record.body)
    view["header_form"] = any(k == records.H_EVENT_TYPE for k, _ in msg.headers() or ())
    return view
