"""Daily partitions of the status tables: created ahead as needed, dropped whole once every row
in them is past retention.

A partition of day D holds webhooks received in [D, D + 1 day) UTC and is named
``<table>_pYYYYMMDD``; it is dropped once D + 1 day is older than the retention. Statements use
the connection's search_path, never a schema name.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from status_projector.changes import day_of

log = logging.getLogger(__name__)

PARTITIONED = ("webhooks", "delivery_attempts")
DAYS_AHEAD = 2
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")
# Serialises partition DDL between projector instances (key: schema name, see _lock).
_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('wm-partitions:' || current_schema()))"


def partition_name(table: str, day: datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _bound(day: datetime) -> str:
    return f"{day:%Y-%m-%d} 00:00:00+00"


class PartitionCache:
    """Remembers the days whose partitions exist, so a batch costs no DDL once they do."""

    def __init__(self) -> None:
        self.days: set[datetime] = set()

    async def ensure(self, conn: asyncpg.Connection, days: set[datetime]) -> list[str]:
        """Create the partitions of ``days`` that are missing; returns the names created."""
        missing = {day_of(d) for d in days} - self.days
        if not missing:
            return []
        created = await create(conn, missing)
        self.days |= missing
        return created

    def forget(self, days: set[datetime]) -> None:
        self.days -= days


async def create(conn: asyncpg.Connection, days: set[datetime]) -> list[str]:
    """Create the missing partitions of ``days`` in one short transaction."""
    created = []
    async with conn.transaction():
        await conn.execute(_LOCK_SQL)
        existing = set(await _partitions(conn))
        for day in sorted(days):
            for table in PARTITIONED:
                name = partition_name(table, day)
                if name in existing:
                    continue
                await conn.execute(
                    f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM '
                    f"('{_bound(day)}') TO ('{_bound(day + timedelta(days=1))}')"
                )
                created.append(name)
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


async def _partitions(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent IN ('webhooks'::regclass, 'delivery_attempts'::regclass)"
    )
    return [r["relname"] for r in rows]


@dataclass
class RetentionResult:
    dropped: list[str]
    rows_removed: dict[str, int]  # by table
    created: list[str]


async def run_retention(
    conn: asyncpg.Connection, retention_ms: int, now: datetime | None = None
) -> RetentionResult:
    """Drop the partitions whose every row is older than the retention (counting their rows),
    delete old dead letters and unprojectable records, and create the partitions of today
    and the coming days."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(milliseconds=retention_ms)
    dropped: list[str] = []
    removed = dict.fromkeys((*PARTITIONED, "dead_letters", "unprojectable"), 0)
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute(_LOCK_SQL)
        for name in sorted(await _partitions(conn)):
            match = _NAME.match(name)
            if not match or match["table"] not in PARTITIONED:
                continue
            day = datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC)
            if day + timedelta(days=1) > cutoff:
                continue
            removed[match["table"]] += await conn.fetchval(f'SELECT count(*) FROM "{name}"')
            await conn.execute(f'DROP TABLE "{name}"')
            dropped.append(name)
        status = await conn.execute("DELETE FROM dead_letters WHERE failed_at <= $1", cutoff)
        removed["dead_letters"] = int(status.split()[-1])
        await conn.execute("DELETE FROM fifo_waiting WHERE created_at <= $1", cutoff)
        status = await conn.execute("DELETE FROM unprojectable WHERE seen_at <= $1", cutoff)
        removed["unprojectable"] = int(status.split()[-1])
    today = day_of(now)
    created = await create(conn, {today + timedelta(days=i) for i in range(DAYS_AHEAD + 1)})
    if dropped or removed["dead_letters"] or removed["unprojectable"]:
        log.info(
            "retention: dropped %s, removed rows %s", ", ".join(dropped) or "no partition", removed
        )
    return RetentionResult(dropped, removed, created)


def dropped_days(names: list[str]) -> set[datetime]:
    days = set()
    for name in names:
        match = _NAME.match(name)
        if match:
            days.add(datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC))
    return days
