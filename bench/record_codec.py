"""The agent's per-record decode cost, side by side in one run: today's header form (the value
is the body, checked as JSON, never re-serialised) against the baseline it replaced (a JSON
envelope parsed whole, then the payload serialised again for the request body).

Run: ``.venv/bin/python -m bench.record_codec`` (CPU only, no broker).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from bench.timing import median_per_call
from schemas import records

REPEATS = 15
LOOPS = 2_000


def payload(size: int) -> bytes:
    item = {"id": 12345, "name": "order line", "price": 19.99, "tags": ["a", "b"]}
    items = []
    while len(orjson.dumps({"items": items})) < size:
        items.append(item)
    return orjson.dumps({"order": str(uuid.uuid4()), "items": items})


def old_parse_ingest(value: bytes) -> dict[str, Any]:
    """The checks of the envelope parser that the header form replaced (commit a3a4c55)."""
    data = orjson.loads(value)
    if not isinstance(data, dict) or "payload" not in data:
        raise ValueError("not an envelope")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("event_type")
    sub = data.get("subscription_id")
    if sub is not None:
        uuid.UUID(sub)
    webhook_id = data["webhook_id"]
    if not isinstance(webhook_id, str) or not webhook_id or len(webhook_id) > 200:
        raise ValueError("webhook_id")
    records.parse_time(data["received_at"])
    if not isinstance(data.get("metadata", {}), dict):
        raise ValueError("metadata")
    return data


def cases(body: bytes) -> dict[str, Callable[[], object]]:
    sub = str(uuid.uuid4())
    hook = records.Webhook(
        webhook_id=str(uuid.uuid4()),
        subscription_id=sub,
        event_type="order.created",
        body=body,
        received_at=records.now_iso(),
        metadata=b'{"source":"bench"}',
    )
    headers = hook.headers()
    envelope = orjson.dumps(
        {
            "webhook_id": hook.webhook_id,
            "subscription_id": sub,
            "event_type": "order.created",
            "payload": orjson.loads(body),
            "received_at": hook.received_at,
            "metadata": {"source": "bench"},
        }
    )

    def baseline() -> object:  # the old path: parse and check the envelope, dump the payload
        return orjson.dumps(old_parse_ingest(envelope)["payload"])

    def header_form() -> object:
        return records.parse_webhook(body, headers, "x", "x").body

    def envelope_form() -> object:  # direct producers of the envelope, exact payload bytes
        return records.parse_webhook(envelope, None, "x", "x").body

    return {
        "baseline (envelope parse + payload dumps)": baseline,
        "header form (parse_webhook, JSON check)": header_form,
        "envelope form (parse_webhook, exact payload)": envelope_form,
    }


def measure(fn: Callable[[], object]) -> float:
    """Median microseconds per call over REPEATS runs of LOOPS calls."""
    return median_per_call(fn, REPEATS, LOOPS) * 1e6


def main() -> None:
    for size in (256, 1024, 16384):
        body = payload(size)
        results = {name: measure(fn) for name, fn in cases(body).items()}
        base = next(iter(results.values()))
        print(f"payload {len(body)} B")
        for name, micros in results.items():
            print(f"  {name:48s} {micros:8.2f} us  ({base / micros:.2f}x baseline speed)")


if __name__ == "__main__":
    main()
