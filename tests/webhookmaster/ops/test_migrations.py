"""Versioned migrations against the real PostgreSQL."""

from __future__ import annotations

import asyncpg

from webhookmaster.ops import migrate
from webhookmaster.settings import Settings


async def test_fresh_schema_has_every_migration_once(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    rows = await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [
        (v, n) for v, n, _ in migrate.migration_files()
    ]
    assert await migrate.migrate_url(wm_settings.dsn, wm_settings.db_schema) == []


async def test_migrations_create_tables_in_their_schema(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    tables = {
        r["table_name"]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            wm_settings.db_schema,
        )
    }
    assert {"schema_migrations", "subscriptions"} <= tables


async def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [v for v, _, _ in migrate.migration_files()]
    assert versions == list(range(1, len(versions) + 1))
