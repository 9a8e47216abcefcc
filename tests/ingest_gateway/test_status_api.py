"""The status API over real HTTP (an aiohttp app with only ``status_api.setup``, on a free
loopback port) against rows the projector's store wrote into the real PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from ingest_gateway import status_api
from schemas import records
from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST, SUBSCRIPTIONS
from status_projector import partitions
from status_projector.changes import KafkaRecord, day_of
from status_projector.store import Store
from tests.support.ports import free_port
from tests.support.records import (
    SUB_URL,
    attempt,
    dead_letter,
    ingest,
    new_id,
    subscription,
)
from webhookmaster.settings import Settings


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def get(self, path: str, **params: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.get(self.base + path, params=params) as resp:
            return resp.status, await resp.json(), resp


async def serve(settings: Settings) -> tuple[web.AppRunner, str]:
    app = web.Application()
    status_api.setup(app, settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(wm_settings: Settings) -> AsyncIterator[Api]:
    runner, base = await serve(wm_settings)
    async with aiohttp.ClientSession() as session:
        yield Api(session, base)
    await runner.cleanup()


async def project(settings: Settings, items: list[tuple[str, dict | None, bytes | None]]) -> None:
    """Write ``items`` (topic suffix, value, key) as the projector would."""
    store = Store(settings)
    try:
        await store.write(
            [
                KafkaRecord(
                    settings.topic(topic),
                    0,
                    offset,
                    1_700_000_000_000,
                    key,
                    None if value is None else records.dumps(value),
                )
                for offset, (topic, value, key) in enumerate(items)
            ]
        )
    finally:
        await store.close()


async def test_status_of_one_webhook(wm_settings: Settings, api: Api) -> None:
    sub = new_id()
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    await project(
        wm_settings,
        [
            (SUBSCRIPTIONS, subscription(sub), sub.encode()),
            (INGEST, ingest("wh-1", sub, t0, payload={"order": 42}), None),
            (ATTEMPTS, attempt("wh-1", sub, t0, 1, "retrying", status_code=503), None),
            (ATTEMPTS, attempt("wh-1", sub, t0, 2, "delivered"), None),
            (INGEST, ingest("wh-2", sub, t0), None),
            (ATTEMPTS, attempt("wh-2", sub, t0, 1, "retrying"), None),
            (INGEST, ingest("wh-3", sub, t0), None),
            (
                DEAD_LETTER,
                dead_letter(
                    "wh-3", sub, "subscription is inactive", record=ingest("wh-3", sub, t0)
                ),
                None,
            ),
        ],
    )
    status, body, _ = await api.get("/api/status/wh-1/")
    assert status == 200
    assert body["id"] == "wh-1" and body["subscription"] == sub
    assert body["subscription_url"] == SUB_URL and body["event_type"] == "order.created"
    assert body["payload"] == {"order": 42}
    assert body["status"] == "DELIVERED" and body["retry_count"] == 1
    assert body["next_retry_at"] is None and body["delivered_at"] is not None
    assert body["created_at"] == records.iso(t0)
    assert [
        (a["attempt_number"], a["status_code"], a["is_success"]) for a in body["delivery_attempts"]
    ] == [(1, 503, False), (2, 200, True)]
    first = body["delivery_attempts"][0]
    assert first["error_detail"] == "HTTP 503" and first["duration_ms"] == 12.5
    assert first["timestamp"] == records.iso(t0 + timedelta(seconds=1))

    status, body, _ = await api.get("/api/status/wh-2/")
    assert body["status"] == "IN_PROGRESS" and body["next_retry_at"] is not None
    assert body["retry_count"] == 0
    status, body, _ = await api.get("/api/status/wh-3/")
    assert body["status"] == "FAILED" and body["delivery_attempts"] == []


async def test_unknown_and_expired_webhooks_are_404(
    wm_settings: Settings, db: asyncpg.Connection, api: Api
) -> None:
    status, body, _ = await api.get("/api/status/nope/")
    assert status == 404 and body["error"] == "not_found" and "nope" in body["detail"]
    # a row past 72 h whose partition is still there (it also holds newer hours)
    expired = datetime.now(UTC) - timedelta(hours=72, minutes=5)
    await partitions.create(db, {day_of(expired)})
    await db.execute(
        "INSERT INTO webhooks (id, created_at, status, updated_at) "
        "VALUES ('old', $1, 'DELIVERED', $1)",
        expired,
    )
    status, body, _ = await api.get("/api/status/old/")
    assert status == 404
    status, body, _ = await api.get("/api/webhooks/")
    assert status == 200 and body["items"] == []


async def test_history_is_newest_first_and_paginated(wm_settings: Settings, api: Api) -> None:
    sub, other = new_id(), new_id()
    t0 = datetime.now(UTC) - timedelta(hours=2)
    items: list = [
        (SUBSCRIPTIONS, subscription(sub), sub.encode()),
        (SUBSCRIPTIONS, subscription(other), other.encode()),
    ]
    for i in range(45):
        received = t0 + timedelta(seconds=i // 2)  # pairs share a created_at: ties by id
        items.append((INGEST, ingest(f"h-{i:02d}", sub, received), None))
        items.append((ATTEMPTS, attempt(f"h-{i:02d}", sub, received, 1, "delivered"), None))
    items.append((INGEST, ingest("other-1", other, t0), None))
    await project(wm_settings, items)

    seen: list[str] = []
    cursor = None
    pages = []
    while True:
        params = {"cursor": cursor} if cursor else {}
        status, body, _ = await api.get(f"/api/subscriptions/{sub}/history/", **params)
        assert status == 200, body
        pages.append(len(body["items"]))
        seen += [item["id"] for item in body["items"]]
        assert all(
            item["subscription"] == sub and len(item["delivery_attempts"]) == 1
            for item in body["items"]
        )
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [20, 20, 5]
    expected = sorted(
        (f"h-{i:02d}" for i in range(45)), key=lambda w: (int(w[2:]) // 2, w), reverse=True
    )
    assert seen == expected

    status, body, _ = await api.get(f"/api/subscriptions/{sub}/history/", limit="100")
    assert len(body["items"]) == 45 and body["next_cursor"] is None
    status, body, _ = await api.get(f"/api/subscriptions/{new_id()}/history/")
    assert status == 404 and body["error"] == "not_found"
    status, body, _ = await api.get("/api/subscriptions/not-a-uuid/history/")
    assert status == 400 and body["field"] == "id"


async def test_webhook_search_filters(wm_settings: Settings, api: Api) -> None:
    sub_a, sub_b = new_id(), new_id()
    t0 = datetime.now(UTC) - timedelta(hours=3)
    await project(
        wm_settings,
        [
            (INGEST, ingest("a-delivered", sub_a, t0), None),
            (ATTEMPTS, attempt("a-delivered", sub_a, t0, 1, "delivered"), None),
            (
                INGEST,
                ingest("a-pending", sub_a, t0 + timedelta(hours=1), event_type="invoice.paid"),
                None,
            ),
            (INGEST, ingest("b-failed", sub_b, t0 + timedelta(hours=2)), None),
            (ATTEMPTS, attempt("b-failed", sub_b, t0 + timedelta(hours=2), 1, "failed"), None),
        ],
    )

    async def ids(**params: str) -> list[str]:
        status, body, _ = await api.get("/api/webhooks/", **params)
        assert status == 200, body
        return [item["id"] for item in body["items"]]

    assert await ids() == ["b-failed", "a-pending", "a-delivered"]
    assert await ids(status="DELIVERED") == ["a-delivered"]
    assert await ids(status="failed") == ["b-failed"]
    assert await ids(subscription_id=sub_a) == ["a-pending", "a-delivered"]
    assert await ids(event_type="invoice.paid") == ["a-pending"]
    assert await ids(since=records.iso(t0 + timedelta(minutes=30))) == ["b-failed", "a-pending"]
    assert await ids(subscription_id=sub_a, status="PENDING") == ["a-pending"]
    assert await ids(limit="1") == ["b-failed"]

    for param, value in [
        ("status", "LOST"),
        ("subscription_id", "x"),
        ("since", "yesterday"),
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "ten"),
        ("cursor", "not-a-cursor"),
        ("event_type", "a\x00"),
    ]:
        status, body, resp = await api.get("/api/webhooks/", **{param: value})
        assert status == 400, (param, value, body)
        assert body["error"] == "validation_error" and body["field"] == param
        assert param in body["detail"] and resp.content_type == "application/json"


async def test_postgres_unreachable_is_503_with_retry_after(wm_settings: Settings) -> None:
    nowhere = dataclasses.replace(wm_settings, database_url="", pg_port=free_port())
    runner, base = await serve(nowhere)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, base)
            for path in (
                "/api/status/x/",
                f"/api/subscriptions/{new_id()}/history/",
                "/api/webhooks/",
            ):
                status, body, resp = await api.get(path)
                assert status == 503, body
                assert body["error"] == "database_unavailable" and body["detail"]
                assert resp.headers["Retry-After"].isdigit()
            status, body, _ = await api.get("/api/webhooks/", limit="0")
            assert status == 400  # parameters are checked before the database is asked
    finally:
        await runner.cleanup()
