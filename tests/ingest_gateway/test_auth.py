"""API keys (WM_API_KEYS) on a real gateway."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import LiveGateway, running_gateway
from tests.support.pipeline import create_subscription
from tests.support.waiting import eventually
from webhookmaster import signing
from webhookmaster.settings import Settings

KEYS = "key-one, key-two ,"
GOOD = {"Authorization": "Bearer key-two"}


@pytest.fixture
async def keyed(wm_settings: Settings) -> AsyncIterator[LiveGateway]:
    async with running_gateway(dataclasses.replace(wm_settings, api_keys=KEYS)) as live:
        yield live


async def test_api_routes_need_a_key(keyed: LiveGateway) -> None:
    sub = await keyed.create_subscription(headers=GOOD)
    item = f"/api/subscriptions/{sub['id']}/"
    routes = [
        ("GET", "/api/subscriptions/"),
        ("POST", "/api/subscriptions/"),
        ("GET", item),
        ("PUT", item),
        ("PATCH", item),
        ("DELETE", item),
        ("POST", "/api/events/"),
        ("GET", "/api/no-such-route/"),
    ]
    bad_headers = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "key-one"},
        {"Authorization": "Basic a2V5LW9uZTo="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer key-one,key-two"},
    ]
    for method, path in routes:
        for headers in bad_headers:
            reply = await keyed.call(method, path, json_body={}, headers=headers)
            assert reply.status == 401, (method, path, headers)
            assert reply.json["error"] == "unauthorized"
            assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert (await keyed.call("GET", item)).status == 401
    assert (await keyed.call("GET", item, headers=GOOD)).json == sub
    lower = {"Authorization": "bearer key-one"}
    assert (await keyed.call("GET", "/api/subscriptions/", headers=lower)).status == 200
    fanout = await keyed.call(
        "POST", "/api/events/", headers=GOOD, json_body={"event_type": "e", "payload": 1}
    )
    assert fanout.status == 202
    assert (await keyed.call("DELETE", item, headers=GOOD)).status == 204


async def test_public_routes_stay_public(keyed: LiveGateway) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json", "/swagger/"):
        assert (await keyed.call("GET", path)).status == 200, path
    unknown = await keyed.call("GET", "/nowhere")
    assert unknown.status == 404 and unknown.json["error"] == "not_found"


async def test_ingest_accepts_a_signature_or_a_key(keyed: LiveGateway) -> None:
    sub = await keyed.create_subscription(headers=GOOD)
    body = b'{"a":  1}'
    assert (await keyed.ingest(sub, body)).status == 202  # signature alone
    assert (await keyed.ingest(sub, body, headers=GOOD, sign=False)).status == 202  # key alone
    wrong_key = {"Authorization": "Bearer nope"}
    assert (await keyed.ingest(sub, body, headers=wrong_key)).status == 202  # signature wins
    reply = await keyed.ingest(sub, body, headers=wrong_key, sign=False)
    assert reply.status == 401 and reply.json["error"] == "unauthorized"
    bad_sig = {"X-Hub-Signature-256": signing.hub_signature("nope", body)}
    reply = await keyed.ingest(sub, body, headers=bad_sig, sign=False)
    assert reply.status == 401 and reply.json["error"] == "invalid_signature"
    reply = await keyed.ingest(sub, body, sign=False)
    assert reply.status == 400 and reply.json["error"] == "signature_required"


async def test_ingest_without_secret_needs_a_key(keyed: LiveGateway) -> None:
    # an outside writer: the gateway learns it by following the topic
    sub_id = create_subscription(keyed.settings, "https://example.com/", secret="")

    async def known() -> bool:
        reply = await keyed.call("GET", f"/api/subscriptions/{sub_id}/", headers=GOOD)
        return reply.status == 200

    assert await eventually(known)
    target = {"id": sub_id}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = await keyed.ingest(target, b"{}", headers=headers)
        assert reply.status == 401 and reply.json["error"] == "unauthorized"
    assert (await keyed.ingest(target, b"{}", headers=GOOD)).status == 202


async def test_ingest_authenticates_before_it_looks_the_subscription_up(keyed: LiveGateway) -> None:
    """An unknown id answers what a subscription with a secret would answer to the same
    credentials, so an unauthenticated caller cannot tell whether it exists; a valid API key
    then learns 404."""
    known = await keyed.create_subscription(headers=GOOD)
    unknown = {"id": str(uuid.uuid4())}
    body = b'{"probe": 1}'
    attempts = [
        ({}, 400, "signature_required"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ({"X-Hub-Signature-256": signing.hub_signature("guess", body)}, 401, "invalid_signature"),
    ]
    for headers, status, error in attempts:
        replies = [
            await keyed.ingest(target, body, headers=headers, sign=False)
            for target in (known, unknown)
        ]
        assert [r.status for r in replies] == [status, status], headers
        assert replies[0].json == replies[1].json, headers
        assert replies[1].json["error"] == error
        assert replies[0].headers.get("WWW-Authenticate") == replies[1].headers.get(
            "WWW-Authenticate"
        )
    reply = await keyed.ingest(unknown, body, headers=GOOD)
    assert reply.status == 404 and reply.json["error"] == "not_found"
    assert (await keyed.ingest(known, body, headers=GOOD)).status == 202
