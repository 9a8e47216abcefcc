"""Apply the versioned SQL files in ``webhookmaster/ops/migrations`` in order, once each, recording
them in ``schema_migrations`` of the configured schema."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources

import asyncpg

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x57484D  # pg_advisory_xact_lock key: one migrator at a time


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file, by version."""
    found = []
    for entry in resources.files("webhookmaster.ops.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, schema: str = "public") -> list[int]:
    """Apply pending migrations inside ``schema``; returns the versions applied."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied_now.append(version)
    return applied_now


async def pending(conn: asyncpg.Connection, schema: str = "public") -> list[int]:
    """Versions of the migration files not yet applied in ``schema`` (all when none is)."""
    versions = [version for version, _, _ in migration_files()]
    table = f"{quote_ident(schema)}.schema_migrations"
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return versions
    done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {table}")}
    return [v for v in versions if v not in done]


async def _on(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[list[int]]]) -> list[int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await work(conn)
    finally:
        await conn.close()


async def pending_url(dsn: str, schema: str = "public") -> list[int]:
    """:func:`pending` on a connection of its own to ``dsn``."""
    return await _on(dsn, lambda conn: pending(conn, schema))


async def migrate_url(dsn: str, schema: str = "public") -> list[int]:
    """:func:`migrate` on a connection of its own to ``dsn``."""
    return await _on(dsn, lambda conn: migrate(conn, schema))
