"""PostgreSQL schemas of the tests: each test's own, dropped afterwards."""

from __future__ import annotations

import asyncpg

from webhookmaster.ops import migrate
from webhookmaster.settings import Settings


async def drop_schema(settings: Settings) -> None:
    """Drop the settings' schema and everything in it (if it exists)."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(
            f"DROP SCHEMA IF EXISTS {migrate.quote_ident(settings.db_schema)} CASCADE"
        )
    finally:
        await conn.close()
