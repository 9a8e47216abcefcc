"""A real gateway for tests: the app served on a free 127.0.0.1 port, driven over loopback HTTP
with aiohttp's client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import jsonschema
from aiohttp import web

from ingest_gateway.app import create_app, wait_ready
from ingest_gateway.http_server import HardenedAppRunner
from schemas.topics import INGEST, SUBSCRIPTIONS
from tests.support.topics import read_topic
from webhookmaster import signing
from webhookmaster.settings import PROJECT_ROOT, Settings

READY_TIMEOUT_S = 60.0
SCHEMAS = PROJECT_ROOT / "schemas"


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LiveGateway:
    """A running gateway app and a client session pointed at it."""

    app: web.Application
    url: str
    session: aiohttp.ClientSession
    settings: Settings

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, params=params
        ) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def create_subscription(
        self, headers: Mapping[str, str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"target_url": "https://example.com/hook", **fields}
        reply = await self.call("POST", "/api/subscriptions/", json_body=body, headers=headers)
        assert reply.status == 201, reply.body
        return reply.json

    async def ingest(
        self,
        sub: Mapping[str, Any],
        body: bytes,
        event_type: str | None = "e",
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
    ) -> Reply:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if sign and sub.get("secret_key"):
            all_headers["X-Hub-Signature-256"] = signing.hub_signature(sub["secret_key"], body)
        params = {"event_type": event_type} if event_type is not None else None
        return await self.call(
            "POST", f"/api/ingest/{sub['id']}/", data=body, headers=all_headers, params=params
        )


@asynccontextmanager
async def running_gateway(
    settings: Settings,
    configure: Callable[[web.Application], None] | None = None,
    wait: bool = True,
) -> AsyncIterator[LiveGateway]:
    """Serve a gateway for ``settings`` on a free loopback port until the block ends; ready
    (table loaded, Kafka answering) when the block starts unless ``wait`` is false.
    ``configure`` may add to the app before it starts."""
    app = create_app(settings)
    if configure is not None:
        configure(app)
    runner = HardenedAppRunner(
        app, access_log=None, shutdown_timeout=15, read_timeout=settings.request_read_timeout_s
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        if wait:
            await wait_ready(app, READY_TIMEOUT_S)
        async with aiohttp.ClientSession() as session:
            yield LiveGateway(app, f"http://{host}:{port}", session, settings)
    finally:
        await runner.cleanup()


async def ingest_records(settings: Settings, count: int) -> list:
    return await read_topic(settings, INGEST, count)


async def subscription_records(settings: Settings, count: int) -> list:
    return await read_topic(settings, SUBSCRIPTIONS, count)


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate_record(value: bytes, name: str) -> dict[str, Any]:
    """The decoded record, checked against ``schemas/<name>.schema.json`` (formats too)."""
    record = json.loads(value)
    jsonschema.validate(record, schema(name), format_checker=jsonschema.FormatChecker())
    return record
