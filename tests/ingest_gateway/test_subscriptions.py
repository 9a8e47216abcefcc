"""The subscription API over real HTTP, backed by the real compacted topic."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import pytest

from tests.support.gateway import (
    LiveGateway,
    running_gateway,
    subscription_records,
    validate_record,
)
from tests.support.waiting import eventually
from webhookmaster import secret_box
from webhookmaster.settings import Settings

FIELDS = {
    "id",
    "target_url",
    "secret_key",
    "event_types",
    "is_active",
    "created_at",
    "updated_at",
    "rate_limit",
    "disabled_reason",
    "disabled_at",
    "ordering",
    "on_failure",
    "circuit",
    "previous_secret_expires_at",
}


async def test_create_returns_201_with_generated_secret(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    assert set(sub) == FIELDS
    assert uuid.UUID(sub["id"]).version == 4
    assert sub["target_url"] == "https://example.com/hook"
    assert sub["event_types"] == [] and sub["is_active"] is True
    assert sub["created_at"] == sub["updated_at"]
    assert sub["secret_key"].startswith("whsec_")
    assert len(base64.b64decode(sub["secret_key"][6:], validate=True)) == 32
    other = await gateway.create_subscription()
    assert other["secret_key"] != sub["secret_key"]


async def test_create_writes_the_record_to_the_compacted_topic(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(
        secret_key="s3cret", event_types=["a", "b"], is_active=False
    )
    assert (sub["secret_key"], sub["event_types"], sub["is_active"]) == (
        "s3cret",
        ["a", "b"],
        False,
    )
    [msg] = await subscription_records(gateway.settings, 1)
    assert msg.key().decode() == sub["id"]
    stored = validate_record(msg.value(), "subscription")
    token = stored.pop("secret_key_encrypted")  # the secret only encrypted, never in plain text
    assert stored == {
        k: v
        for k, v in sub.items()
        if k not in ("secret_key", "circuit", "previous_secret_expires_at")  # none: not stored
    }
    assert b"s3cret" not in msg.value()
    assert secret_box.from_settings(gateway.settings).decrypt(token) == ("s3cret", True)


async def test_read_your_writes_on_the_same_instance(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(event_types=["x"])
    got = await gateway.call("GET", f"/api/subscriptions/{sub['id']}/")
    assert got.status == 200 and got.json == sub
    patched = await gateway.call(
        "PATCH", f"/api/subscriptions/{sub['id']}/", json_body={"event_types": ["y"]}
    )
    assert patched.status == 200
    again = await gateway.call("GET", f"/api/subscriptions/{sub['id']}/")
    assert again.json["event_types"] == ["y"]


async def test_put_replaces_and_keeps_the_secret(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(event_types=["a"], is_active=False)
    reply = await gateway.call(
        "PUT",
        f"/api/subscriptions/{sub['id']}/",
        json_body={"target_url": "http://other.example:8080/x"},
    )
    assert reply.status == 200
    new = reply.json
    assert new["target_url"] == "http://other.example:8080/x"
    assert new["event_types"] == [] and new["is_active"] is True  # defaults again
    assert new["secret_key"] == sub["secret_key"]
    assert new["created_at"] == sub["created_at"] and new["updated_at"] > sub["updated_at"]
    missing = await gateway.call(
        "PUT", f"/api/subscriptions/{sub['id']}/", json_body={"is_active": True}
    )
    assert missing.status == 400 and missing.json["field"] == "target_url"


async def test_patch_updates_only_given_fields(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription(event_types=["a"])
    reply = await gateway.call(
        "PATCH",
        f"/api/subscriptions/{sub['id']}/",
        json_body={"is_active": False, "secret_key": "new"},
    )
    assert reply.status == 200
    assert reply.json == {
        **sub,
        "is_active": False,
        "secret_key": "new",
        "updated_at": reply.json["updated_at"],
    }


async def test_delete_writes_a_tombstone_and_forgets(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    reply = await gateway.call("DELETE", f"/api/subscriptions/{sub['id']}/")
    assert reply.status == 204 and reply.body == b""
    records = await subscription_records(gateway.settings, 2)
    assert [m.key().decode() for m in records] == [sub["id"]] * 2
    assert records[1].value() is None
    for method in ("GET", "DELETE", "PATCH"):
        gone = await gateway.call(method, f"/api/subscriptions/{sub['id']}/", json_body={})
        assert gone.status == 404 and gone.json["error"] == "not_found"
    listed = await gateway.call("GET", "/api/subscriptions/")
    assert listed.json == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("sub_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_id_is_404(gateway: LiveGateway, sub_id: str) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        reply = await gateway.call(
            method,
            f"/api/subscriptions/{sub_id}/",
            json_body={"target_url": "https://example.com/"},
        )
        assert reply.status == 404, method
        assert reply.json["error"] == "not_found"


INVALID_BODIES: list[tuple[Any, str | None]] = [
    ({}, "target_url"),
    ({"target_url": "ftp://example.com/x"}, "target_url"),
    ({"target_url": "/relative/path"}, "target_url"),
    ({"target_url": "http://"}, "target_url"),
    ({"target_url": "https://exa mple.com/"}, "target_url"),
    ({"target_url": "https://example.com:99999/"}, "target_url"),
    ({"target_url": 42}, "target_url"),
    ({"target_url": "https://example.com/", "event_types": "a"}, "event_types"),
    ({"target_url": "https://example.com/", "event_types": ["a", ""]}, "event_types"),
    ({"target_url": "https://example.com/", "event_types": [1]}, "event_types"),
    ({"target_url": "https://example.com/", "is_active": "yes"}, "is_active"),
    ({"target_url": "https://example.com/", "is_active": 1}, "is_active"),
    ({"target_url": "https://example.com/", "secret_key": ""}, "secret_key"),
    ({"target_url": "https://example.com/", "secret_key": None}, "secret_key"),
    ({"target_url": "https://example.com/", "colour": "blue"}, "colour"),
    ({"target_url": "https://example.com/", "id": str(uuid.uuid4())}, "id"),
    (["https://example.com/"], None),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_create_validation_names_the_field(
    gateway: LiveGateway, body: Any, field: str | None
) -> None:
    reply = await gateway.call("POST", "/api/subscriptions/", json_body=body)
    assert reply.status == 400
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json["error"] == "validation_error"
    assert reply.json.get("field") == field
    assert reply.json["detail"]


async def test_patch_validation_and_non_json_bodies(gateway: LiveGateway) -> None:
    sub = await gateway.create_subscription()
    path = f"/api/subscriptions/{sub['id']}/"
    bad = await gateway.call("PATCH", path, json_body={"is_active": "no"})
    assert bad.status == 400 and bad.json["field"] == "is_active"
    for method, target in (("PATCH", path), ("PUT", path), ("POST", "/api/subscriptions/")):
        for raw in (b"{not json", b"", b"\xff\xfe"):
            reply = await gateway.call(
                method, target, data=raw, headers={"Content-Type": "application/json"}
            )
            assert reply.status == 400, (method, raw)
            assert reply.json["error"] == "validation_error"
    unchanged = await gateway.call("GET", path)
    assert unchanged.json == sub


async def test_pagination_with_cursor(gateway: LiveGateway) -> None:
    created = [
        await gateway.create_subscription(target_url=f"https://example.com/{i}") for i in range(5)
    ]
    expected = sorted(created, key=lambda s: (s["created_at"], s["id"]))
    pages, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        reply = await gateway.call("GET", "/api/subscriptions/", params=params)
        assert reply.status == 200
        pages.append(reply.json["items"])
        cursor = reply.json["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [s for page in pages for s in page] == expected
    whole = await gateway.call("GET", "/api/subscriptions/")
    assert whole.json == {"items": expected, "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),
    ],
)
async def test_bad_pagination_parameters(
    gateway: LiveGateway, params: dict[str, str], field: str
) -> None:
    reply = await gateway.call("GET", "/api/subscriptions/", params=params)
    assert reply.status == 400
    assert reply.json["field"] == field


async def test_limit_bounds(gateway: LiveGateway) -> None:
    await gateway.create_subscription()
    for limit in ("1", "200"):
        reply = await gateway.call("GET", "/api/subscriptions/", params={"limit": limit})
        assert reply.status == 200 and len(reply.json["items"]) == 1


async def test_second_instance_follows_the_topic(
    gateway: LiveGateway, wm_settings: Settings
) -> None:
    async with running_gateway(wm_settings) as second:
        sub = await gateway.create_subscription(event_types=["a"])
        path = f"/api/subscriptions/{sub['id']}/"

        async def seen() -> bool:
            return (await second.call("GET", path)).status == 200

        assert await eventually(seen, timeout=15)
        assert (await second.call("GET", path)).json == sub
        # an update and a delete through the second instance reach the first
        await second.call("PATCH", path, json_body={"is_active": False})

        async def updated() -> bool:
            return (await gateway.call("GET", path)).json["is_active"] is False

        assert await eventually(updated, timeout=15)
        assert (await second.call("DELETE", path)).status == 204

        async def deleted() -> bool:
            return (await gateway.call("GET", path)).status == 404

        assert await eventually(deleted, timeout=15)


async def test_a_restarted_gateway_loads_the_table(wm_settings: Settings) -> None:
    async with running_gateway(wm_settings) as first:
        kept = await first.create_subscription()
        gone = await first.create_subscription()
        assert (await first.call("DELETE", f"/api/subscriptions/{gone['id']}/")).status == 204
    async with running_gateway(wm_settings) as again:  # ready only once loaded to the end
        reply = await again.call("GET", "/api/subscriptions/")
        assert reply.json == {"items": [kept], "next_cursor": None}


async def test_listing_under_concurrent_writes_sees_each_lasting_subscription_once(
    gateway: LiveGateway,
) -> None:
    lasting = [
        await gateway.create_subscription(target_url=f"https://example.com/l{i}") for i in range(15)
    ]
    listed = asyncio.Event()
    writes = 0

    async def write_meanwhile() -> None:
        """Creates, updates of lasting subscriptions and deletes, until the listing is done."""
        nonlocal writes
        passing: list[str] = []
        while not listed.is_set():
            passing.append((await gateway.create_subscription())["id"])
            patched = await gateway.call(
                "PATCH",
                f"/api/subscriptions/{lasting[writes % len(lasting)]['id']}/",
                json_body={"is_active": writes % 2 == 0},
            )
            assert patched.status == 200
            if len(passing) > 2:
                gone = await gateway.call("DELETE", f"/api/subscriptions/{passing.pop(0)}/")
                assert gone.status == 204
            writes += 1

    async def list_all() -> list[str]:
        seen: list[str] = []
        cursor = None
        try:
            while True:
                params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
                reply = await gateway.call("GET", "/api/subscriptions/", params=params)
                assert reply.status == 200
                seen += [s["id"] for s in reply.json["items"]]
                cursor = reply.json["next_cursor"]
                if cursor is None:
                    return seen
                await asyncio.sleep(0)  # let the writer in between pages
        finally:
            listed.set()

    writer = asyncio.create_task(write_meanwhile())
    seen = await asyncio.wait_for(list_all(), 120)
    await asyncio.wait_for(writer, 60)
    assert writes > 0
    assert len(seen) == len(set(seen))
    assert {s["id"] for s in lasting} <= set(seen)
