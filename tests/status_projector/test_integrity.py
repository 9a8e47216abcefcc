"""Issue 9 on the status side, written through the projector's store to a real PostgreSQL:
DELIVERED is final whatever arrives later, every HTTP request is its own attempt row, and a
record that cannot be projected is kept with its reason instead of vanishing."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import asyncpg
import orjson

from schemas import records
from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST
from status_projector.changes import KafkaRecord
from status_projector.store import Store
from tests.support.records import attempt, dead_letter, ingest, new_id, now
from webhookmaster.settings import Settings


def rec(
    settings: Settings, suffix: str, offset: int, value: dict | bytes, headers: tuple = ()
) -> KafkaRecord:
    raw = value if isinstance(value, bytes) else records.dumps(value)
    return KafkaRecord(settings.topic(suffix), 0, offset, 0, None, raw, headers)


async def test_a_late_dead_letter_never_turns_a_delivered_webhook_failed(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    sub, t0 = new_id(), now()
    events = [
        (INGEST, ingest("W", sub, t0)),
        (ATTEMPTS, attempt("W", sub, t0, 1, "delivered")),
        # the same record redelivered after the subscription was deleted
        (
            DEAD_LETTER,
            dead_letter(
                "W", sub, f"subscription {sub} does not exist", record=ingest("W", sub, t0)
            ),
        ),
    ]
    store = Store(wm_settings)
    try:
        for run, order in enumerate(itertools.permutations(events)):
            wid = f"W{run}"
            for offset, (suffix, value) in enumerate(order):
                value = orjson.loads(records.dumps(value).replace(b'"W"', f'"{wid}"'.encode()))
                await store.write([rec(wm_settings, suffix, 100 * run + offset, value)])
            row = await db.fetchrow("SELECT * FROM webhooks WHERE id = $1", wid)
            assert row["status"] == "DELIVERED", order
            assert row["delivered_at"] is not None and row["last_status_code"] == 200
            letters = await db.fetch("SELECT reason FROM dead_letters WHERE webhook_id = $1", wid)
            assert [r["reason"] for r in letters] == [f"subscription {sub} does not exist"]
    finally:
        await store.close()


async def test_every_request_is_its_own_attempt_row(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    sub, t0 = new_id(), now()
    first = attempt("R", sub, t0, 1, "retrying", status_code=500)
    # the agent crashed after publishing the first outcome, before committing: attempt 1 redone
    redone = attempt("R", sub, t0, 1, "delivered", started=t0 + timedelta(seconds=5))
    first["attempt_id"], redone["attempt_id"] = "a" * 32, "b" * 32
    store = Store(wm_settings)
    try:
        await store.write(
            [
                rec(wm_settings, INGEST, 0, ingest("R", sub, t0)),
                rec(wm_settings, ATTEMPTS, 0, first),
                rec(wm_settings, ATTEMPTS, 1, redone),
                rec(wm_settings, ATTEMPTS, 2, redone),
            ]
        )  # a replayed event
    finally:
        await store.close()
    rows = await db.fetch(
        "SELECT attempt_number, status_code, outcome FROM delivery_attempts "
        "WHERE webhook_id = 'R' ORDER BY started_at"
    )
    assert [tuple(r) for r in rows] == [(1, 500, "retrying"), (1, 200, "delivered")]
    assert (await db.fetchval("SELECT status FROM webhooks WHERE id = 'R'")) == "DELIVERED"


async def test_unreadable_records_are_kept_as_unprojectable(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    store = Store(wm_settings)
    try:
        overflow = attempt("O", new_id(), now(), 1, "delivered")
        overflow["duration_ms"] = 1e20  # a duration no timestamp can add
        await store.write(
            [
                rec(wm_settings, INGEST, 7, b"{not json"),
                rec(wm_settings, ATTEMPTS, 8, {"webhook_id": "x"}),
                rec(wm_settings, ATTEMPTS, 9, overflow),
            ]
        )
    finally:
        await store.close()
    rows = await db.fetch(
        "SELECT topic, record_offset, reason, raw FROM unprojectable ORDER BY record_offset"
    )
    assert [(r["topic"], r["record_offset"]) for r in rows] == [
        (wm_settings.topic(INGEST), 7),
        (wm_settings.topic(ATTEMPTS), 8),
        (wm_settings.topic(ATTEMPTS), 9),
    ]
    assert "OverflowError" in rows[2]["reason"]
    assert rows[0]["raw"] == "{not json" and "not JSON" in rows[0]["reason"]


async def test_header_form_records_keep_any_valid_json_payload(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    sub, t0 = new_id(), now()
    bodies = {
        "big": b'{"n": 123456789012345678901234567890}',
        "huge": b"[1e400]",
        "nul": b'{"t": "a\\u0000b"}',
        "deep": b"[" * 1000 + b"]" * 1000,
        "dup": b'{"a": 1, "a": 2}',
    }
    batch = []
    for offset, (wid, body) in enumerate(bodies.items()):
        hook = records.Webhook(
            webhook_id=wid,
            subscription_id=sub,
            event_type="e",
            body=body,
            received_at=records.iso(t0),
        )
        batch.append(rec(wm_settings, INGEST, offset, body, tuple(hook.headers())))
    store = Store(wm_settings)
    try:
        await store.write(batch)
    finally:
        await store.close()
    rows = {r["id"]: r for r in await db.fetch("SELECT id, status, payload FROM webhooks")}
    assert set(rows) == set(bodies)
    assert all(r["status"] == "PENDING" for r in rows.values())
    assert json.loads(rows["big"]["payload"]) == {"n": 123456789012345678901234567890}
    assert rows["nul"]["payload"] == '{"t": "a\ufffdb"}'  # jsonb cannot hold NUL
