"""Retention drops whole day partitions once every row in them is older than 72 h; rows past
72 h in a kept partition stay until their partition goes (the API filters them out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from schemas import records
from schemas.topics import ATTEMPTS, INGEST
from status_projector import metrics, partitions
from status_projector.changes import KafkaRecord, day_of
from status_projector.store import Store
from tests.support.records import attempt, ingest, new_id
from webhookmaster.settings import Settings

H72 = 259_200_000


async def insert_webhook(db: asyncpg.Connection, webhook_id: str, created: datetime) -> None:
    await db.execute(
        "INSERT INTO webhooks (id, created_at, subscription_id, event_type, payload, status, "
        "updated_at) VALUES ($1, $2, $3, 'order.created', '{}', 'DELIVERED', $2)",
        webhook_id,
        created,
        new_id(),
    )
    await db.execute(
        "INSERT INTO delivery_attempts (webhook_id, attempt_number, received_at, "
        "subscription_id, event_type, target_url, started_at, duration_ms, outcome) "
        "VALUES ($1, 1, $2, $3, 'order.created', 'https://x.example/', $2, 1, 'delivered')",
        webhook_id,
        created,
        new_id(),
    )


async def partition_names(db: asyncpg.Connection) -> set[str]:
    return {
        r["relname"]
        for r in await db.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent IN ('webhooks'::regclass, 'delivery_attempts'::regclass)"
        )
    }


async def test_retention_drops_partitions_older_than_72_hours(db: asyncpg.Connection) -> None:
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    today = day_of(now)
    rows = {
        "five-days": now - timedelta(days=5),
        "four-days-late": today - timedelta(days=4) + timedelta(hours=23),  # D-4 ends at D-3
        "expired-kept": today - timedelta(days=3) + timedelta(hours=6),  # 78 h: in D-3
        "recent": now - timedelta(hours=1),
    }
    await partitions.create(db, {day_of(t) for t in rows.values()})
    for webhook_id, created in rows.items():
        await insert_webhook(db, webhook_id, created)
    await db.execute(
        "INSERT INTO dead_letters (dl_partition, dl_offset, failed_at, reason) "
        "VALUES (0, 1, $1, 'old'), (0, 2, $2, 'new')",
        now - timedelta(hours=80),
        now - timedelta(hours=1),
    )
    await db.execute(
        "INSERT INTO unprojectable (topic, partition, record_offset, seen_at, "
        "reason) VALUES ('t', 0, 1, $1, 'old'), ('t', 0, 2, $2, 'new')",
        now - timedelta(hours=80),
        now - timedelta(hours=1),
    )

    result = await partitions.run_retention(db, H72, now=now)

    gone = {
        partitions.partition_name(t, today - timedelta(days=d))
        for t in partitions.PARTITIONED
        for d in (4, 5)
    }
    assert set(result.dropped) == gone
    assert result.rows_removed == {
        "webhooks": 2,
        "delivery_attempts": 2,
        "dead_letters": 1,
        "unprojectable": 1,
    }
    names = await partition_names(db)
    assert not gone & names
    # the partition holding the 78-hour-old row still holds newer rows' time range: kept
    assert partitions.partition_name("webhooks", today - timedelta(days=3)) in names
    # today and the coming days exist for the projector
    for ahead in range(partitions.DAYS_AHEAD + 1):
        assert partitions.partition_name("webhooks", today + timedelta(days=ahead)) in names
    left = {r["id"] for r in await db.fetch("SELECT id FROM webhooks")}
    assert left == {"expired-kept", "recent"}
    assert await db.fetchval("SELECT count(*) FROM delivery_attempts") == 2
    assert [r["reason"] for r in await db.fetch("SELECT reason FROM dead_letters")] == ["new"]
    # a second run has nothing left to do
    again = await partitions.run_retention(db, H72, now=now)
    assert again.dropped == [] and again.created == []


async def test_projector_retention_run_counts_rows_and_skips_expired_records(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    old_day = day_of(datetime.now(UTC)) - timedelta(days=6)
    await partitions.create(db, {old_day})
    for i in range(3):
        await insert_webhook(db, f"old-{i}", old_day + timedelta(hours=i))
    before = metrics.RETENTION_ROWS.labels("webhooks")._value.get()
    store = Store(wm_settings)
    try:
        result = await store.retention()
        assert result is not None
        assert partitions.partition_name("webhooks", old_day) in result.dropped
        assert metrics.RETENTION_ROWS.labels("webhooks")._value.get() - before == 3

        # records of webhooks received before the retention are not projected at all
        sub = new_id()
        stale = datetime.now(UTC) - timedelta(hours=73)
        fresh = datetime.now(UTC) - timedelta(hours=1)
        recs = [
            KafkaRecord(wm_settings.topic(topic), 0, i, 0, None, records.dumps(v))
            for i, (topic, v) in enumerate(
                [
                    (INGEST, ingest("stale", sub, stale)),
                    (ATTEMPTS, attempt("stale", sub, stale, 1, "delivered")),
                    (INGEST, ingest("fresh", sub, fresh)),
                ]
            )
        ]
        await store.write(recs)
        assert [r["id"] for r in await db.fetch("SELECT id FROM webhooks")] == ["fresh"]
        assert await db.fetchval("SELECT count(*) FROM delivery_attempts") == 0
    finally:
        await store.close()
