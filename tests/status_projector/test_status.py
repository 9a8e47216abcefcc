"""The status projector turns real topic records into status rows: lifecycles, order safety,
replay. The projector runs as ``webhookmaster projector`` subprocesses against the session's
Kafka and PostgreSQL."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path

import asyncpg
from confluent_kafka.admin import AdminClient

from schemas import records
from schemas.topics import ATTEMPTS, DEAD_LETTER, INGEST, SUBSCRIPTIONS
from status_projector.changes import KafkaRecord
from status_projector.consumer import group_id
from status_projector.store import Store
from tests.support.processes import start_projector
from tests.support.records import (
    attempt,
    count,
    dead_letter,
    dump,
    ingest,
    new_id,
    now,
    produce,
    subscription,
    webhook_items,
)
from tests.support.waiting import eventually
from webhookmaster import settings as settings_mod
from webhookmaster.kafka_clients import client_config
from webhookmaster.ops import migrate
from webhookmaster.settings import Settings


async def webhook(db: asyncpg.Connection, webhook_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM webhooks WHERE id = $1", webhook_id)


async def attempts_of(db: asyncpg.Connection, webhook_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM delivery_attempts WHERE webhook_id = $1 ORDER BY attempt_number", webhook_id
    )


async def test_lifecycles_become_status_rows(
    wm_settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    sub_a, sub_gone, sub_invoices = new_id(), new_id(), new_id()
    t0 = now() - timedelta(minutes=30)
    produce(
        wm_settings,
        [
            (SUBSCRIPTIONS, sub_a, subscription(sub_a)),
            (SUBSCRIPTIONS, sub_gone, subscription(sub_gone, url="https://gone.example/")),
            (
                SUBSCRIPTIONS,
                sub_invoices,
                subscription(
                    sub_invoices, url="https://invoices.example/", event_types=["invoice.paid"]
                ),
            ),
            (SUBSCRIPTIONS, sub_gone, None),  # tombstone: deleted
        ],
    )
    projector = start_projector(wm_settings, tmp_path / "projector.log")
    try:
        await projector.wait_ready()
        # the mirror first, so that the fan-out below sees every subscription
        await eventually(
            lambda: count(db, "subscriptions", "deleted_at IS NOT NULL"), what="subscription mirror"
        )

        delivered, retried, exhausted, orphaned, late, waiting, fan, after_poison = (
            f"wh-{name}-{new_id()}"
            for name in (
                "delivered",
                "retried",
                "exhausted",
                "orphaned",
                "late",
                "waiting",
                "fan",
                "ok",
            )
        )
        items = webhook_items(delivered, sub_a, t0, ["delivered"])
        items += webhook_items(retried, sub_a, t0, ["retrying", "retrying", "delivered"])
        items += [(INGEST, sub_a, ingest(retried, sub_a, t0, attempt=n, due_at=t0)) for n in (1, 2)]
        items += webhook_items(exhausted, sub_a, t0, ["retrying"] * 5 + ["failed"])
        gave_up = "gave up after 6 attempt(s) of 6: HTTP 500"
        items.append(
            (
                DEAD_LETTER,
                sub_a,
                dead_letter(
                    exhausted, sub_a, gave_up, record=ingest(exhausted, sub_a, t0, attempt=6)
                ),
            )
        )
        # a webhook for a deleted subscription: a dead letter and no attempt
        gone = f"subscription {sub_gone} does not exist (deleted?)"
        items.append((INGEST, sub_gone, ingest(orphaned, sub_gone, t0)))
        items.append(
            (
                DEAD_LETTER,
                sub_gone,
                dead_letter(orphaned, sub_gone, gone, record=ingest(orphaned, sub_gone, t0)),
            )
        )
        # out of order: attempt 3 (delivered) before attempt 2, the ingest record last
        items.append((ATTEMPTS, late, attempt(late, sub_a, t0, 3, "delivered")))
        items.append((ATTEMPTS, late, attempt(late, sub_a, t0, 2, "retrying")))
        items.append((INGEST, sub_a, ingest(late, sub_a, t0)))
        items += webhook_items(waiting, sub_a, t0, ["retrying"])
        # a fan-out event: one webhook per matching active subscription
        items.append((INGEST, fan, ingest(fan, None, t0, event_type="invoice.paid")))
        # an unreadable record's dead letter; NUL characters in a payload and an error
        items.append(
            (
                DEAD_LETTER,
                None,
                dead_letter(None, None, "unreadable record: not JSON", raw="\ufffd\ufffd"),
            )
        )
        nul = f"nul-{new_id()}"
        items.append((INGEST, sub_a, ingest(nul, sub_a, t0, payload={"text": "a\u0000b"})))
        items.append(
            (ATTEMPTS, nul, attempt(nul, sub_a, t0, 1, "retrying", error="reset\u0000by peer"))
        )
        items += webhook_items(after_poison, sub_a, t0, ["delivered"])
        produce(wm_settings, items)
        await eventually(lambda: webhook(db, after_poison), what="the webhook after the NULs")
        await eventually(lambda: count(db, "webhooks"), what="rows")
        await eventually(
            lambda: _settled(db, [delivered, retried, exhausted, orphaned, late, waiting]),
            what="every lifecycle settled",
        )

        row = await webhook(db, delivered)
        assert row["status"] == "DELIVERED" and row["attempt_count"] == 1
        assert row["last_status_code"] == 200 and row["delivered_at"] is not None
        assert row["payload"] is not None and str(row["subscription_id"]) == sub_a
        assert len(await attempts_of(db, delivered)) == 1

        row = await webhook(db, retried)
        assert row["status"] == "DELIVERED" and row["attempt_count"] == 3
        tried = await attempts_of(db, retried)
        assert [(a["attempt_number"], a["outcome"]) for a in tried] == [
            (1, "retrying"),
            (2, "retrying"),
            (3, "delivered"),
        ]
        assert tried[0]["started_at"] < tried[1]["started_at"] < tried[2]["started_at"]

        row = await webhook(db, exhausted)
        assert row["status"] == "FAILED" and row["attempt_count"] == 6
        assert row["last_error"] == gave_up and row["last_status_code"] == 500
        assert row["next_retry_at"] is None and row["delivered_at"] is None
        assert len(await attempts_of(db, exhausted)) == 6

        row = await webhook(db, orphaned)
        assert row["status"] == "FAILED" and row["last_error"] == gone
        assert row["attempt_count"] == 0 and await attempts_of(db, orphaned) == []

        row = await webhook(db, late)
        assert row["status"] == "DELIVERED" and row["attempt_count"] == 3
        assert row["last_status_code"] == 200 and row["payload"] is not None

        row = await webhook(db, waiting)
        assert row["status"] == "IN_PROGRESS" and row["next_retry_at"] is not None
        assert row["last_error"] == "HTTP 500"

        fanned = {
            str(r["subscription_id"])
            for r in await db.fetch(
                "SELECT subscription_id FROM webhooks WHERE id = ANY($1::text[])",
                [records.derived_id(fan, s) for s in (sub_a, sub_gone, sub_invoices)],
            )
        }
        assert fanned == {sub_a, sub_invoices}

        letters = await db.fetch("SELECT * FROM dead_letters")  # every dead letter is kept
        unreadable = [r["reason"] for r in letters if r["webhook_id"] is None]
        assert unreadable == ["unreadable record: not JSON"]
        assert {r["webhook_id"] for r in letters} >= {orphaned, None}
        # NUL characters (which PostgreSQL text and jsonb refuse) are replaced, not lost
        row = await webhook(db, nul)
        assert row["payload"] == '{"text": "a\ufffdb"}'
        assert row["last_error"] == "reset\ufffdby peer"
        assert await count(db, "subscriptions") == 3
        assert projector.metric("webhookmaster_projector_events_total") >= len(items)
    finally:
        assert await projector.terminate() == 0


async def _settled(db: asyncpg.Connection, ids: list[str]) -> bool:
    rows = await db.fetch(
        "SELECT id, status, attempt_count FROM webhooks WHERE id = ANY($1::text[])", ids
    )
    by_id = {r["id"]: r for r in rows}
    if len(by_id) < len(ids):
        return False
    expected = dict(
        zip(
            ids,
            [
                ("DELIVERED", 1),
                ("DELIVERED", 3),
                ("FAILED", 6),
                ("FAILED", 0),
                ("DELIVERED", 3),
                ("IN_PROGRESS", 1),
            ],
            strict=True,
        )
    )
    return all((by_id[i]["status"], by_id[i]["attempt_count"]) == expected[i] for i in ids)


async def test_events_in_any_order_give_the_same_row(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    """Every order of one webhook's events (one event per batch) ends in the same row, and the
    row never moves backwards from DELIVERED or FAILED on the way."""
    sub = new_id()
    t0 = now() - timedelta(hours=1)
    lives = {
        "delivered": [
            (INGEST, ingest("W", sub, t0)),
            (ATTEMPTS, attempt("W", sub, t0, 1, "retrying")),
            (INGEST, ingest("W", sub, t0, attempt=1, due_at=t0)),
            (ATTEMPTS, attempt("W", sub, t0, 2, "delivered")),
        ],
        "failed": [
            (INGEST, ingest("W", sub, t0)),
            (ATTEMPTS, attempt("W", sub, t0, 1, "retrying")),
            (ATTEMPTS, attempt("W", sub, t0, 2, "failed", status_code=400)),
            (
                DEAD_LETTER,
                dead_letter(
                    "W", sub, "not retried: HTTP 400", record=ingest("W", sub, t0, attempt=2)
                ),
            ),
        ],
    }
    store = Store(wm_settings)
    try:
        for name, events in lives.items():
            results = set()
            orders = list(itertools.permutations(events))
            for run, order in enumerate(random.Random(7).sample(orders, min(len(orders), 12))):
                wid = f"{name}-{run}"
                terminal_seen = None
                for offset, (suffix, value) in enumerate(order):
                    value = _renamed(value, wid)
                    await store.write(
                        [
                            KafkaRecord(
                                wm_settings.topic(suffix),
                                0,
                                offset,
                                0,
                                wid.encode(),
                                records.dumps(value),
                            )
                        ]
                    )
                    status = (await webhook(db, wid))["status"]
                    if terminal_seen:
                        assert status == terminal_seen, (order, status)
                    elif status in ("DELIVERED", "FAILED"):
                        terminal_seen = status
                row = dict(await webhook(db, wid))
                row.pop("id")
                tried = [tuple(a.values())[1:] for a in await attempts_of(db, wid)]
                results.add((tuple(sorted(row.items())), tuple(tried)))
            assert len(results) == 1, f"{name}: different rows for different orders"
        failed = await webhook(db, "failed-0")
        assert failed["status"] == "FAILED" and failed["last_error"] == "not retried: HTTP 400"
        assert failed["last_status_code"] == 400 and failed["attempt_count"] == 2
    finally:
        await store.close()


def _renamed(value: dict, wid: str) -> dict:
    value = dict(value, webhook_id=wid)
    if isinstance(value.get("record"), dict):
        value["record"] = dict(value["record"], webhook_id=wid)
    return value


async def test_replay_into_an_empty_schema_gives_identical_rows(
    wm_settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    subs = [new_id() for _ in range(3)]
    t0 = now() - timedelta(hours=2)
    mirror = [(SUBSCRIPTIONS, s, subscription(s)) for s in subs]
    mirror.append((SUBSCRIPTIONS, subs[2], None))
    items = []
    rng = random.Random(11)
    ladders = [
        ["delivered"],
        ["retrying", "delivered"],
        ["retrying"] * 5 + ["failed"],
        ["failed"],
        ["retrying", "retrying"],
        [],
    ]
    for i in range(150):
        sub = subs[i % 2]
        wid = f"replay-{i}"
        ladder = ladders[i % len(ladders)]
        items += webhook_items(wid, sub, t0 + timedelta(seconds=i), ladder)
        if ladder and ladder[-1] == "failed":
            items.append(
                (
                    DEAD_LETTER,
                    sub,
                    dead_letter(
                        wid, sub, "gave up", record=ingest(wid, sub, t0 + timedelta(seconds=i))
                    ),
                )
            )
    items.append((DEAD_LETTER, None, dead_letter(None, None, "unreadable", raw="x")))
    rng.shuffle(items)  # topics interleave differently than the events happened
    produce(wm_settings, mirror + items)

    first = start_projector(wm_settings, tmp_path / "first.log")
    try:
        await eventually(lambda: _all_seen(db, 150), what="first projection")
        await eventually(lambda: count(db, "dead_letters"), what="dead letter")
    finally:
        assert await first.terminate() == 0
    original = await dump(db)

    # the same group starts over, into an empty schema
    admin = AdminClient(client_config(wm_settings, {}))
    group = group_id(wm_settings)
    admin.delete_consumer_groups([group])[group].result(timeout=30)
    replay_settings = settings_mod.load(
        settings_mod.to_env(wm_settings), db_schema=wm_settings.db_schema + "_replay"
    )
    await migrate.migrate_url(replay_settings.dsn, replay_settings.db_schema)
    replay_db = await asyncpg.connect(
        replay_settings.dsn, server_settings={"search_path": replay_settings.db_schema}
    )
    second = start_projector(replay_settings, tmp_path / "second.log")
    try:
        await eventually(lambda: _all_seen(replay_db, 150), what="replayed projection")
        await eventually(lambda: count(replay_db, "dead_letters"), what="dead letter")
        await eventually(lambda: _same(replay_db, original), timeout=10, what="identical rows")
    finally:
        assert await second.terminate() == 0
        await replay_db.execute(
            f"DROP SCHEMA {migrate.quote_ident(replay_settings.db_schema)} CASCADE"
        )
        await replay_db.close()
    assert original["webhooks"] and original["delivery_attempts"]


async def _all_seen(db: asyncpg.Connection, n: int) -> bool:
    """Every webhook settled as its events say (n webhooks, six ladders in turn)."""
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM webhooks WHERE status <> 'FAILED' OR last_error = "
            "'gave up' GROUP BY status"
        )
    )
    share = n // 6
    return (
        statuses
        == {"DELIVERED": 2 * share, "FAILED": 2 * share, "IN_PROGRESS": share, "PENDING": share}
        and await count(db, "delivery_attempts") == share * (1 + 2 + 6 + 1 + 2)
        and await count(db, "subscriptions", "deleted_at IS NOT NULL") == 1
    )


async def _same(db: asyncpg.Connection, original: dict) -> bool:
    return await dump(db) == original
