"""Ingest and fan-out over real HTTP; the records are read back from the real ingest topic."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator

from schemas import records
from schemas.topics import INGEST
from tests.support.gateway import LiveGateway, ingest_records, running_gateway
from tests.support.pipeline import create_subscription
from tests.support.topics import read_to_end, webhook_view
from tests.support.waiting import eventually
from webhookmaster import signing
from webhookmaster.settings import Settings

# Valid JSON with unusual spacing: the signature must cover these exact bytes.
ODD_BODY = b'{ "order" :\t42 ,\n  "items":[ 1,2 ,  3 ] ,"note":"caf\xc3\xa9"  }\n'
ODD_PAYLOAD = {"order": 42, "items": [1, 2, 3], "note": "caf\u00e9"}


async def test_ingest_202_and_the_record_on_the_topic(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    reply = await gateway.ingest(
        sub, ODD_BODY, event_type="order.created", headers={"Idempotency-Key": "key-1"}
    )
    assert reply.status == 202, reply.body
    assert set(reply.json) == {"id", "status"} and reply.json["status"] == "accepted"
    assert reply.json["id"] == records.keyed_id(sub["id"], "key-1")  # the key's uuid5
    assert "Idempotent-Replayed" not in reply.headers
    [msg] = await ingest_records(gateway.settings, 1)
    assert msg.key().decode() == sub["id"]
    assert records.is_marked(msg.headers())  # the agents de-duplicate it
    assert msg.value() == ODD_BODY  # the record value is the exact body
    record = webhook_view(msg)
    assert record["header_form"]
    assert record["webhook_id"] == reply.json["id"]
    assert record["subscription_id"] == sub["id"]
    assert record["event_type"] == "order.created"
    assert record["payload"] == ODD_PAYLOAD
    assert record["metadata"] == {
        "source": "gateway",
        "remote_addr": "127.0.0.1",
        "content_type": "application/json",
        "idempotency_key": "key-1",
    }
    received = records.parse_time(record["received_at"])
    assert received.tzinfo is not None


async def test_idempotency_key_replays_and_rules(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    plain = await gateway.ingest(sub, b"{}")
    assert uuid.UUID(plain.json["id"]).version == 4  # no key: a fresh id, not marked
    key = {"Idempotency-Key": "k"}
    first, again = [await gateway.ingest(sub, b"{}", headers=key) for _ in range(2)]
    assert first.json["id"] == again.json["id"] == records.keyed_id(sub["id"], "k")
    assert again.headers["Idempotent-Replayed"] == "true"
    for bad in ("", "x" * 256, "caf\u00e9", "tab\there"):
        reply = await gateway.ingest(sub, b"{}", headers={"Idempotency-Key": bad})
        assert reply.status == 400 and reply.json["field"] == "Idempotency-Key", bad
    # a replay this gateway recognises is not produced again (acknowledged before its 202)
    topic = gateway.settings.topic(INGEST)
    got = await asyncio.to_thread(read_to_end, gateway.settings, topic)
    assert [webhook_view(m)["webhook_id"] for m in got] == [plain.json["id"], first.json["id"]]
    assert not records.is_marked(got[0].headers()) and records.is_marked(got[1].headers())


async def test_any_json_value_is_a_payload(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    bodies = [b"[1, 2]", b'"text"', b"3.5", b"null", b"true"]
    for body in bodies:
        assert (await gateway.ingest(sub, body)).status == 202, body
    got = await ingest_records(gateway.settings, len(bodies))
    assert sorted(m.value() for m in got) == sorted(bodies)
    assert (await gateway.ingest(sub, b"")).status == 400  # an empty body is not JSON


async def test_signature_rules(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(secret_key="my-secret")
    # signed over a re-serialised body (other spacing): not the bytes sent
    reserialised = signing.hub_signature("my-secret", json.dumps(ODD_PAYLOAD).encode())
    cases = [
        ({}, 400, "signature_required"),
        ({"X-Hub-Signature-256": reserialised}, 401, "invalid_signature"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "invalid_signature"),
        (
            {"X-Hub-Signature-256": signing.hub_signature("other", ODD_BODY)},
            401,
            "invalid_signature",
        ),
        ({"X-Hub-Signature-256": "garbage"}, 401, "invalid_signature"),
        # an API key is no credential when no keys are configured
        ({"Authorization": "Bearer anything"}, 400, "signature_required"),
    ]
    for headers, status, error in cases:
        reply = await gateway.ingest(sub, ODD_BODY, headers=headers, sign=False)
        assert (reply.status, reply.json["error"]) == (status, error), headers
        assert reply.json["field"] == "X-Hub-Signature-256"
    good = signing.hub_signature("my-secret", ODD_BODY)
    ok = await gateway.ingest(sub, ODD_BODY, headers={"X-Hub-Signature-256": good}, sign=False)
    assert ok.status == 202
    [msg] = await ingest_records(gateway.settings, 1)  # only the signed request was produced
    assert webhook_view(msg)["webhook_id"] == ok.json["id"]


async def test_event_type_rules(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(event_types=["a.created", "a.deleted"])
    missing = await gateway.ingest(sub, b"{}", event_type=None)
    assert missing.status == 400 and missing.json["field"] == "event_type"
    empty = await gateway.ingest(sub, b"{}", event_type="")
    assert empty.status == 400 and empty.json["field"] == "event_type"
    other = await gateway.ingest(sub, b"{}", event_type="b.created")
    assert other.status == 400 and other.json["field"] == "event_type"
    assert other.json["allowed"] == ["a.created", "a.deleted"]
    assert "a.created" in other.json["detail"]
    assert (await gateway.ingest(sub, b"{}", event_type="a.deleted")).status == 202


async def test_inactive_subscription_is_409(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(is_active=False)
    reply = await gateway.ingest(sub, b"{}")
    assert reply.status == 409 and reply.json["error"] == "subscription_inactive"
    await gateway.call("PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"is_active": True})
    assert (await gateway.ingest(sub, b"{}")).status == 202  # read-your-writes


async def test_unknown_subscription_is_404(gateway: LiveGateway) -> None:
    for sub_id in (str(uuid.uuid4()), "nope"):
        reply = await gateway.ingest({"id": sub_id}, b"{}")
        assert reply.status == 404 and reply.json["error"] == "not_found"


async def test_body_not_json_is_400(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    for body in (b"{broken", b"\xff\xfe", b"{'single': 1}", b"NaN"):
        reply = await gateway.ingest(sub, body)
        assert reply.status == 400, body
        assert reply.json["error"] == "validation_error"


async def test_create_then_ingest_at_once(gateway: LiveGateway) -> None:
    for _ in range(5):
        sub = await gateway.create_subscription()
        assert (await gateway.ingest(sub, b"{}")).status == 202


async def _chunks(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _json_of_size(size: int) -> bytes:
    body = b'{"pad":"' + b"x" * (size - 10) + b'"}'
    assert len(body) == size
    return body


async def test_body_size_limit(wm_settings: Settings) -> None:
    settings = dataclasses.replace(wm_settings, max_body_bytes=1024)
    async with running_gateway(settings) as gw:
        sub = await gw.create_subscription()
        exact = _json_of_size(1024)
        assert (await gw.ingest(sub, exact)).status == 202
        over = _json_of_size(1025)
        declared = await gw.ingest(sub, over)  # Content-Length says too much
        assert declared.status == 413 and declared.json["error"] == "payload_too_large"
        # chunked: no Content-Length, the bytes read decide
        chunked = await gw.call(
            "POST",
            f"/api/ingest/{sub['id']}/",
            data=_chunks(_json_of_size(4096)),
            params={"event_type": "e"},
            headers={"X-Hub-Signature-256": signing.hub_signature(sub["secret_key"], b"")},
        )
        assert chunked.status == 413 and chunked.json["error"] == "payload_too_large"
        fanout = await gw.call("POST", "/api/events/", data=_chunks(_json_of_size(2048)))
        assert fanout.status == 413


async def test_default_limit_is_one_mebibyte(gateway: LiveGateway) -> None:
    assert gateway.settings.max_body_bytes == 1_048_576
    sub = await gateway.create_subscription()
    assert (await gateway.ingest(sub, _json_of_size(1_048_576))).status == 202
    assert (await gateway.ingest(sub, _json_of_size(1_048_577))).status == 413
    [msg] = await ingest_records(gateway.settings, 1)
    assert len(msg.value()) == 1_048_576 and json.loads(msg.value())["pad"]


async def test_subscription_without_secret_is_open_without_api_keys(gateway: LiveGateway) -> None:
    # an outside writer: the gateway learns it by following the topic
    sub_id = create_subscription(gateway.settings, "https://example.com/", secret="")

    async def known() -> bool:
        return (await gateway.call("GET", f"/api/subscriptions/{sub_id}/")).status == 200

    assert await eventually(known)
    reply = await gateway.ingest({"id": sub_id}, b'{"x": 1}')
    assert reply.status == 202


async def test_fan_out_is_one_record_keyed_by_its_event_id(gateway: LiveGateway) -> None:
    # however many subscriptions match, the gateway produces one record and answers at once
    for _ in range(5):
        await gateway.create_subscription(event_types=["order.created"])
    reply = await gateway.call(
        "POST", "/api/events/", json_body={"event_type": "order.created", "payload": {"n": 1}}
    )
    assert reply.status == 202, reply.body
    assert set(reply.json) == {"event_id", "status"} and reply.json["status"] == "accepted"
    event_id = reply.json["event_id"]
    assert uuid.UUID(event_id).version == 4
    [msg] = await ingest_records(gateway.settings, 1)
    record = webhook_view(msg)
    assert msg.key().decode() == record["webhook_id"] == event_id
    assert record["subscription_id"] is None and record["event_type"] == "order.created"
    assert msg.value() == b'{"n": 1}' and record["metadata"]["event_id"] == event_id


async def test_fan_out_takes_the_producers_event_id_or_the_idempotency_key(
    gateway: LiveGateway,
) -> None:
    given = await gateway.call(
        "POST",
        "/api/events/",
        json_body={"event_type": "e", "payload": 1, "event_id": "order-42.created:v1"},
    )
    assert given.status == 202 and given.json["event_id"] == "order-42.created:v1"
    keyed = await gateway.call(
        "POST",
        "/api/events/",
        json_body={"event_type": "e", "payload": 2},
        headers={"Idempotency-Key": "k-1"},
    )
    assert keyed.status == 202 and keyed.json["event_id"] == records.keyed_id("events", "k-1")
    got = await ingest_records(gateway.settings, 2)
    assert [m.key().decode() for m in got] == ["order-42.created:v1", keyed.json["event_id"]]
    for bad in ("", "a b", "-lead", "x" * 201, "caf\u00e9", 7):
        reply = await gateway.call(
            "POST", "/api/events/", json_body={"event_type": "e", "payload": 1, "event_id": bad}
        )
        assert reply.status == 400 and reply.json["field"] == "event_id", bad


async def test_fan_out_validation(gateway: LiveGateway) -> None:
    cases = [
        ({"payload": {}}, "event_type"),
        ({"event_type": "a"}, "payload"),
        ({"event_type": "", "payload": {}}, "event_type"),
        ({"event_type": 3, "payload": {}}, "event_type"),
        ({"event_type": "a", "payload": {}, "extra": 1}, "extra"),
        ([1], None),
    ]
    for body, field in cases:
        reply = await gateway.call("POST", "/api/events/", json_body=body)
        assert reply.status == 400, body
        assert reply.json.get("field") == field
    broken = await gateway.call("POST", "/api/events/", data=b"{nope")
    assert broken.status == 400 and broken.json["error"] == "validation_error"
