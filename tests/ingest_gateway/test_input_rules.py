"""Input the gateway must refuse (or accept) at the edge: event types that cannot travel as a
header, URLs that are IRIs or non-canonical IPv4 hosts, empty query values, page sizes."""

from __future__ import annotations

import base64

import orjson
import pytest

from ingest_gateway import validation
from tests.support.gateway import LiveGateway, ingest_records
from tests.support.topics import webhook_view
from webhookmaster import signing

BAD_EVENT_TYPES = [
    "a\r\nX-Injected: yes",
    "a\nb",
    "a\rb",
    "a\x00b",
    "tab\there",
    "del\x7f",
    "c1\x85",
    "caf\u00e9",
    " lead",
    "trail ",
    "x" * 201,
    "",
]
GOOD_EVENT_TYPES = ["order.created", "a b", "x" * 200, "!~", "A-Z_0-9:/@"]


@pytest.mark.parametrize("value", BAD_EVENT_TYPES)
def test_event_type_problem_refuses(value: str) -> None:
    assert validation.event_type_problem(value) is not None


@pytest.mark.parametrize("value", GOOD_EVENT_TYPES)
def test_event_type_problem_accepts(value: str) -> None:
    assert validation.event_type_problem(value) is None


def test_event_type_problem_refuses_non_strings() -> None:
    for value in (None, 1, ["a"], b"a"):
        assert validation.event_type_problem(value) is not None


async def test_header_injection_in_event_type_is_400_everywhere(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    raw = await gateway.call(
        "POST",
        f"/api/ingest/{sub['id']}/?event_type=a%0D%0AX-Injected:%20yes",
        data=b"{}",
        headers={"X-Hub-Signature-256": _sign(sub, b"{}"), "Content-Type": "application/json"},
    )
    assert raw.status == 400, raw.body
    assert raw.headers["Content-Type"].startswith("application/json")
    assert (raw.json["error"], raw.json["field"]) == ("validation_error", "event_type")
    for value in BAD_EVENT_TYPES:
        reply = await gateway.ingest(sub, b"{}", event_type=value)
        assert reply.status == 400, value
        assert (reply.json["error"], reply.json["field"]) == ("validation_error", "event_type")
        fan = await gateway.call(
            "POST", "/api/events/", json_body={"event_type": value, "payload": {}}
        )
        assert fan.status == 400, value
        assert (fan.json["error"], fan.json["field"]) == ("validation_error", "event_type")
        for method, path in (
            ("POST", "/api/subscriptions/"),
            ("PUT", f"/api/subscriptions/{sub['id']}/"),
        ):
            body = {"target_url": "https://example.com/", "event_types": ["ok", value]}
            reply = await gateway.call(method, path, json_body=body)
            assert reply.status == 400, (method, value)
            assert reply.json["field"] == "event_types"
    # Nothing refused reached Kafka: the one record there is the good one sent last.
    good = await gateway.ingest(sub, b"{}", event_type="a b")
    assert good.status == 202
    [record] = await ingest_records(gateway.settings, 1)
    assert record.key().decode() == sub["id"]
    assert webhook_view(record)["webhook_id"] == good.json["id"]


def _sign(sub: dict, body: bytes) -> str:
    return signing.hub_signature(sub["secret_key"], body)


NON_CANONICAL = [
    "http://2130706433/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://0/",
    "http://0x7f.0.0.1/",
    "https://0x7f000001/",
    "http://10.1:8080/x",
    "http://127.0.0.010/",
]
IRIS = [
    "https://exämple.com/",
    "https://example.com/pfad/ä",
    "https://例え.jp/",
    "https://example.com/\u00a0x",
]


@pytest.mark.parametrize("url", NON_CANONICAL + IRIS)
async def test_target_url_refused(gateway: LiveGateway, url: str) -> None:
    reply = await gateway.call("POST", "/api/subscriptions/", json_body={"target_url": url})
    assert reply.status == 400, reply.body
    assert (reply.json["error"], reply.json["field"]) == ("validation_error", "target_url")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "https://192.0.2.1/",
        "https://xn--exmple-cua.com/p%C3%A4",
        "http://[::1]:8080/",
        "https://example.com/a?b=c",
    ],
)
async def test_target_url_accepted(gateway: LiveGateway, url: str) -> None:
    reply = await gateway.call("POST", "/api/subscriptions/", json_body={"target_url": url})
    assert reply.status == 201, reply.body


async def test_empty_query_values_are_absent(gateway: LiveGateway) -> None:
    await gateway.create_subscription()
    listed = await gateway.call("GET", "/api/subscriptions/?cursor=")
    assert listed.status == 200 and len(listed.json["items"]) == 1
    for path in (
        "/api/webhooks/?event_type=",
        "/api/webhooks/?cursor=",
        "/api/webhooks/?event_type=&cursor=",
    ):
        reply = await gateway.call("GET", path)
        assert reply.status == 200, (path, reply.body)
        assert reply.json == {"items": [], "next_cursor": None}


async def test_limit_maximum_is_the_documented_one(gateway: LiveGateway) -> None:
    doc = (await gateway.call("GET", "/api/openapi.json")).json
    sub = await gateway.create_subscription()
    paths = {
        "/api/subscriptions/": "/api/subscriptions/",
        "/api/webhooks/": "/api/webhooks/",
        "/api/subscriptions/{id}/history/": f"/api/subscriptions/{sub['id']}/history/",
    }
    for template, path in paths.items():
        [limit] = [p for p in doc["paths"][template]["get"]["parameters"] if p["name"] == "limit"]
        maximum = limit["schema"]["maximum"]
        ok = await gateway.call("GET", path, params={"limit": str(maximum)})
        assert ok.status in (200, 404), (template, ok.body)  # history: no webhook yet
        assert ok.status == 200 or ok.json["error"] == "not_found"
        over = await gateway.call("GET", path, params={"limit": str(maximum + 1)})
        assert over.status == 400 and over.json["field"] == "limit", template


async def test_nul_in_status_queries_is_refused_not_500(gateway: LiveGateway) -> None:
    """PostgreSQL text cannot hold NUL: such a value is a 400 (or an unknown id), never a
    database error (found by tests/ingest_gateway/test_api_fuzz.py)."""
    reply = await gateway.call("GET", "/api/webhooks/?event_type=a%00b")
    assert reply.status == 400 and reply.json["field"] == "event_type", reply.body
    position = orjson.dumps(["2026-01-01T00:00:00+00:00", "a\u0000"])
    cursor = base64.urlsafe_b64encode(position).decode().rstrip("=")
    reply = await gateway.call("GET", f"/api/webhooks/?cursor={cursor}")
    assert reply.status == 400 and reply.json["field"] == "cursor", reply.body
    reply = await gateway.call("GET", "/api/status/a%00b/")
    assert reply.status == 404 and reply.json["error"] == "not_found", reply.body
