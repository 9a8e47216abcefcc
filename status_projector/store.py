"""The projector's PostgreSQL side: one transaction per batch, retried with backoff while
PostgreSQL is unreachable, so nothing is lost and the consumer commits only what is written."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from status_projector import changes, metrics, partitions, upserts
from status_projector.changes import KafkaRecord
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


class Stopping(Exception):
    """The projector is stopping before the batch could be written: do not commit it."""


class Store:
    """Writes batches of records as rows; :meth:`write` returns only once they are committed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.partitions = partitions.PartitionCache()
        self.stopping = asyncio.Event()
        self.db_ok = False
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.settings.dsn,
                min_size=0,
                max_size=2,
                timeout=5,
                command_timeout=60,
                server_settings={
                    "search_path": self.settings.db_schema,
                    "application_name": "wm-status-projector",
                },
            )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                self._pool.terminate()
            self._pool = None

    def cutoff(self) -> datetime:
        return datetime.now(UTC) - timedelta(milliseconds=self.settings.retention_ms)

    async def write(self, recs: list[KafkaRecord]) -> None:
        """Write ``recs`` in one transaction, retrying with capped backoff while PostgreSQL
        fails; raises :class:`Stopping` when the projector stops while it retries (then
        nothing of this batch is committed)."""
        started = time.monotonic()
        delay = BACKOFF_FIRST_S
        failures = 0
        while True:
            batch = changes.decode(recs, self.prefix, self.cutoff())
            try:
                refused = await self._write_once(batch)
                break
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if "no partition" in str(exc):  # dropped behind our back: create it again
                    self.partitions.days.clear()
                self.db_ok = False
                metrics.DB_UP.set(0)
                metrics.DB_RETRIES.inc()
                failures += 1
                if self.stopping.is_set():
                    raise Stopping() from exc
                log.warning(
                    "writing a batch of %d records failed (try %d): %s: %s; retrying in %.1f s",
                    len(recs),
                    failures,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await self._sleep(delay)
                if self.stopping.is_set():
                    raise Stopping() from exc
                delay = min(delay * 2, BACKOFF_MAX_S)
        if failures:
            log.info("batch of %d records written after %d failed tries", len(recs), failures)
        self.db_ok = True
        metrics.DB_UP.set(1)
        for topic, count in batch.projected.items():
            metrics.EVENTS.labels(topic).inc(count)
        for (topic, reason), count in batch.skipped.items():
            metrics.SKIPPED.labels(topic, reason).inc(count)
        for kind, count in refused.items():
            metrics.SKIPPED.labels(kind, "refused").inc(count)
        metrics.BATCH_SIZE.observe(len(recs))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        if batch.newest_ms:
            metrics.LAG_SECONDS.set(max(0.0, time.time() - batch.newest_ms / 1000))

    async def _write_once(self, batch: changes.Batch) -> dict[str, int]:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            await self.partitions.ensure(conn, batch.days())
            try:
                async with conn.transaction():
                    await upserts.write(conn, batch)
                return {}
            except upserts.DATA_ERRORS as exc:
                if "no partition" in str(exc):
                    raise
                log.warning("batch refused (%s); writing it change by change", exc)
            async with conn.transaction():
                return await upserts.write_skipping_bad(conn, batch)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def ping(self) -> bool:
        """Check that PostgreSQL answers; updates :attr:`db_ok`."""
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=5) as conn:
                await conn.fetchval("SELECT 1", timeout=5)
            self.db_ok = True
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.db_ok = False
        metrics.DB_UP.set(1 if self.db_ok else 0)
        return self.db_ok

    async def retention(self) -> partitions.RetentionResult | None:
        """One retention run (see :func:`partitions.run_retention`); None when PostgreSQL
        failed (the next run catches up)."""
        try:
            pool = await self._get_pool()
            async with pool.acquire(timeout=10) as conn:
                result = await partitions.run_retention(conn, self.settings.retention_ms)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("retention run failed: %s: %s", type(exc).__name__, exc)
            return None
        self.partitions.forget(partitions.dropped_days(result.dropped))
        metrics.RETENTION_PARTITIONS.inc(len(result.dropped))
        for table, count in result.rows_removed.items():
            metrics.RETENTION_ROWS.labels(table).inc(count)
        return result
