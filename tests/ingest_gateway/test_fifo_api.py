"""The FIFO options through the API (docs/ordering.md): ordering and on_failure on a
subscription (POST, PATCH, PUT, the stored record), the ordering_key ingest parameter, and the
operator's skip/resume commands on the parked topic."""

from __future__ import annotations

import orjson

from schemas import parked
from schemas.topics import PARKED
from tests.support.gateway import (
    LiveGateway,
    ingest_records,
    subscription_records,
    validate_record,
)
from tests.support.topics import consume
from webhookmaster import signing


async def test_ordering_options_are_stored_kept_and_reset(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    assert (sub["ordering"], sub["on_failure"]) == ("none", "skip")  # the defaults
    path = f"/api/subscriptions/{sub['id']}/"
    fifo = await gateway.call("PATCH", path, json_body={"ordering": "fifo", "on_failure": "halt"})
    assert fifo.status == 200 and (fifo.json["ordering"], fifo.json["on_failure"]) == (
        "fifo",
        "halt",
    )
    kept = await gateway.call("PATCH", path, json_body={"is_active": True})
    assert (kept.json["ordering"], kept.json["on_failure"]) == ("fifo", "halt")
    stored = await subscription_records(gateway.settings, 3)
    record = validate_record(stored[-1].value(), "subscription")
    assert (record["ordering"], record["on_failure"]) == ("fifo", "halt")
    # PUT: omitted fields take their defaults
    reset = await gateway.call("PUT", path, json_body={"target_url": sub["target_url"]})
    assert (reset.json["ordering"], reset.json["on_failure"]) == ("none", "skip")


async def test_invalid_ordering_options_are_refused(gateway: LiveGateway) -> None:
    for body in ({"ordering": "lifo"}, {"on_failure": "retry"}, {"ordering": None}):
        reply = await gateway.call(
            "POST", "/api/subscriptions/", json_body={"target_url": "https://e.com/", **body}
        )
        assert reply.status == 400 and reply.json["error"] == "validation_error"
        assert reply.json["field"] == next(iter(body))


async def test_ordering_key_travels_with_the_webhook(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(ordering="fifo")
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signing.hub_signature(sub["secret_key"], b"{}"),
    }
    reply = await gateway.call(
        "POST",
        f"/api/ingest/{sub['id']}/",
        data=b"{}",
        headers=headers,
        params={"event_type": "e", "ordering_key": "order-42"},
    )
    assert reply.status == 202, reply.body
    [msg] = await ingest_records(gateway.settings, 1)
    assert dict(msg.headers())["wm-ordering-key"] == b"order-42"
    too_long = await gateway.call(
        "POST",
        f"/api/ingest/{sub['id']}/",
        data=b"{}",
        headers=headers,
        params={"event_type": "e", "ordering_key": "k" * 201},
    )
    assert too_long.status == 400 and too_long.json["field"] == "ordering_key"


async def test_skip_and_resume_go_to_every_parked_partition(gateway: LiveGateway) -> None:
    skip = await gateway.call("POST", "/api/webhooks/w-1/skip/")
    assert skip.status == 202 and skip.json == {
        "id": "w-1",
        "command": "skip",
        "status": "accepted",
    }
    resume = await gateway.call("POST", "/api/webhooks/w-1/resume/")
    assert resume.status == 202
    settings = gateway.settings
    msgs = consume(settings, settings.topic(PARKED), 6, 30)  # 3 partitions, 2 commands
    assert sorted(m.partition() for m in msgs) == [0, 0, 1, 1, 2, 2]
    for msg in msgs:
        value = orjson.loads(msg.value())
        assert value["webhook_id"] == "w-1" and value["op"] in parked.OPERATOR_OPS
        assert dict(msg.headers())[parked.OP_HEADER] == value["op"].encode()
