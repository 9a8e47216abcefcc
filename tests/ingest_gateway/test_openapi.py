"""The OpenAPI document, Swagger page, probes, metrics and the JSON shape of every error."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from ingest_gateway.app import TABLE_LOADER, TableLoadError
from tests.support.gateway import LiveGateway, running_gateway
from webhookmaster.settings import Settings

STATUS_PATHS = {"/api/status/{}/", "/api/subscriptions/{}/history/", "/api/webhooks/"}


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


async def test_openapi_document_is_valid_and_covers_every_route(gateway: LiveGateway) -> None:
    reply = await gateway.call("GET", "/api/openapi.json")
    assert reply.status == 200
    doc = reply.json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    documented = {
        (_normalise(path), method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    registered = {
        (_normalise(route.resource.canonical), route.method)
        for route in gateway.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert registered <= documented, registered - documented
    missing = documented - registered
    assert not missing, missing
    for path in STATUS_PATHS:
        assert any(_normalise(p) == path for p in doc["paths"]), path
    status = doc["components"]["schemas"]["WebhookStatus"]
    assert status["properties"]["status"]["enum"] == [
        "PENDING",
        "IN_PROGRESS",
        "DELIVERED",
        "FAILED",
    ]
    for item in doc["paths"].values():  # every documented answer says what it carries
        for method, op in item.items():
            if method != "parameters":
                assert op["responses"], op


async def test_swagger_page_loads_the_document(gateway: LiveGateway) -> None:
    reply = await gateway.call("GET", "/swagger/")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"/api/openapi.json" in reply.body and b"swagger-ui" in reply.body


async def test_probes(gateway: LiveGateway) -> None:
    assert (await gateway.call("GET", "/healthz")).json == {"status": "alive"}
    ready = await gateway.call("GET", "/readyz")
    assert ready.status == 200 and ready.json == {"status": "ready"}


async def test_not_ready_while_the_table_is_not_loaded(wm_settings: Settings) -> None:
    # a prefix whose subscriptions topic does not exist: the table never loads
    missing = dataclasses.replace(wm_settings, topic_prefix="absent-" + wm_settings.topic_prefix)
    async with running_gateway(missing, wait=False) as gw:
        with pytest.raises(TableLoadError):
            await asyncio.wait_for(asyncio.shield(gw.app[TABLE_LOADER]), 30)
        ready = await gw.call("GET", "/readyz")
        assert ready.status == 503 and ready.json == {"status": "not ready"}
        assert (await gw.call("GET", "/healthz")).status == 200
        for method, path in (
            ("GET", "/api/subscriptions/"),
            ("POST", "/api/events/"),
            ("POST", f"/api/ingest/{uuid.uuid4()}/?event_type=e"),
        ):
            reply = await gw.call(method, path, json_body={"event_type": "e", "payload": 1})
            assert reply.status == 503, path
            assert reply.json["error"] == "not_ready" and "Retry-After" in reply.headers


async def test_metrics_count_requests_and_ingest(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    assert (await gateway.ingest(sub, b'{"a": 1}')).status == 202
    assert (await gateway.call("GET", "/nope")).status == 404
    reply = await gateway.call("GET", "/metrics")
    assert reply.status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
    }
    route = ("route", "/api/ingest/{subscription_id}/")
    assert (
        samples[
            ("webhookmaster_gateway_requests_total", (("method", "POST"), route, ("status", "202")))
        ]
        >= 1
    )
    assert (
        samples[
            (
                "webhookmaster_gateway_requests_total",
                (("method", "GET"), ("route", "unmatched"), ("status", "404")),
            )
        ]
        >= 1
    )
    assert samples[("webhookmaster_gateway_ingest_seconds_count", (("kind", "ingest"),))] >= 1
    assert samples[("webhookmaster_gateway_produce_seconds_count", (("topic", "ingest"),))] >= 1
    produced = ("webhookmaster_gateway_produce_seconds_count", (("topic", "subscriptions"),))
    assert samples[produced] >= 1
    assert samples[("webhookmaster_gateway_payload_bytes_count", ())] >= 1


async def test_every_error_body_is_json(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    calls = [
        ("GET", "/no/such/route", None, 404),
        ("GET", "/api/no-such-route/", None, 404),
        ("DELETE", "/api/events/", None, 405),
        ("GET", f"/api/ingest/{sub['id']}/", None, 405),
        ("PUT", "/api/subscriptions/", None, 405),
        ("POST", "/healthz", None, 405),
        ("POST", "/api/subscriptions/", b"[", 400),
        ("GET", f"/api/subscriptions/{sub['id']}x/", None, 404),
    ]
    for method, path, data, status in calls:
        reply = await gateway.call(method, path, data=data)
        assert reply.status == status, (method, path)
        assert reply.headers["Content-Type"].startswith("application/json"), (method, path)
        body = reply.json
        assert isinstance(body["error"], str) and isinstance(body["detail"], str)
        assert "Traceback" not in reply.body.decode()
        if status == 405:
            assert body["error"] == "method_not_allowed" and "Allow" in reply.headers


async def test_unexpected_errors_are_json_without_details(wm_settings: Settings) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("internal secret detail")

    def add_broken_route(app: web.Application) -> None:
        app.router.add_get("/broken", broken)

    async with running_gateway(wm_settings, configure=add_broken_route) as gw:
        reply = await gw.call("GET", "/broken")
    assert reply.status == 500
    assert reply.json == {"error": "internal_error", "detail": "internal server error"}
