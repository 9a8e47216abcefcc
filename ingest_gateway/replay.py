"""Replay from the log: ``POST /api/subscriptions/{id}/replay/`` delivers again every webhook
for a subscription whose record the ingest topic holds in a time window (delivered or not: a
receiver that lost its data), found by timestamp (``offsets_for_times``), not in the status
views. ``GET /api/replays/{job_id}/`` shows a job's progress from PostgreSQL, so any gateway
process answers.

A job runs in the gateway process that accepted it. It reads every partition of the window
(direct producers and fan-out records are not keyed by the subscription), keeps the records of
the subscription -- and of fan-out records it accepts, under the id the agent derives -- each
webhook id once, and produces each as a new delivery chain (:func:`replay_record`, resend's
redelivery: attempts numbered on, the status row's chain plus one). A window of at most
``INLINE_RECORDS`` records is replayed before the 202, whose ``count`` is then final; a larger
one answers at once (``count`` null) and runs on. A job whose gateway stops is marked
failed; run it again (receivers de-duplicate on ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from confluent_kafka import Message

from ingest_gateway import redelivery, validation
from ingest_gateway.errors import ApiError, not_found, unavailable, validation_error
from ingest_gateway.jsonio import json_response, parse_json
from ingest_gateway.replay_reader import WindowReader
from ingest_gateway.state import Gateway, gateway
from ingest_gateway.status_api import DB_DOWN, POOL
from schemas import records
from schemas.records import RecordError, Webhook
from webhookmaster.kafka_clients import record_headers, record_offset, record_tp
from webhookmaster.subscription_table import Subscription

log = logging.getLogger(__name__)
CHAIN_SPAN = redelivery.CHAIN_SPAN

_TIMESTAMP = re.compile(records.TIMESTAMP_PATTERN)
INLINE_RECORDS = 1000  # windows this small are replayed before the answer
JOBS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("replay_jobs", set)

_INSERT = """
INSERT INTO replay_jobs (id, subscription_id, since, until, event_types, state, total)
VALUES ($1, $2, $3, $4, $5, 'running', $6)
"""
_PROGRESS = """
UPDATE replay_jobs SET scanned = $2, count = $3, state = $4, error = $5, updated_at = now()
WHERE id = $1
"""
_SELECT = "SELECT * FROM replay_jobs WHERE id = $1"
# Where each webhook's status row stands (its chain and attempts), to start the next chain.
_STANDING = """
SELECT DISTINCT ON (id) id, progress, attempt_count FROM webhooks
WHERE id = ANY($1::text[]) AND created_at > now() - $2 * interval '1 millisecond'
ORDER BY id, created_at DESC
"""


def replay_record(webhook: Webhook, job_id: str, attempts: int, chain: int) -> Webhook:
    """The record that delivers ``webhook`` (as the log holds it) again: the first record of a
    new delivery chain (:func:`ingest_gateway.redelivery.new_chain`: same webhook id, body and
    received time; its attempts numbered on from ``attempts``, the ones its status row counts,
    in the chain after ``chain``), the job named in its metadata. No idempotency marker:
    nothing de-duplicates it. :class:`ApiError` (409) when the webhook has used up its attempt
    or chain numbers."""
    try:
        metadata = orjson.loads(webhook.metadata)
    except orjson.JSONDecodeError:
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    metadata["replay_job"] = job_id
    return redelivery.new_chain(
        redelivery.Stored(
            id=webhook.webhook_id,
            created_at=records.parse_time(webhook.received_at),
            subscription_id=webhook.subscription_id,
            event_type=webhook.event_type,
            body=webhook.body,
            metadata=records.dumps(metadata),
            attempt_count=attempts,
            chain=chain,
            status="",
        )
    )


def setup(app: web.Application) -> None:
    """Track the app's running jobs; on shutdown they stop and are marked failed."""
    app.cleanup_ctx.append(_jobs_context)


async def _jobs_context(app: web.Application) -> AsyncIterator[None]:
    jobs: set[asyncio.Task[None]] = set()
    app[JOBS] = jobs
    yield
    running = list(jobs)
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# --- the request ------------------------------------------------------------------------------


def _moment(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise validation_error(f"{field} must be an RFC 3339 timestamp with a time zone", field)
    try:
        return records.parse_time(value).astimezone(UTC)
    except ValueError:
        raise validation_error(f"{field} must be an RFC 3339 timestamp", field) from None


def _window(body: bytes) -> tuple[datetime, datetime, list[str]]:
    """``(since, until, event_types)`` of a replay body."""
    try:
        data = parse_json(body)
    except ValueError as exc:
        raise validation_error(str(exc)) from None
    if not isinstance(data, dict):
        raise validation_error("the request body must be a JSON object")
    validation.known_fields(data, ("since", "until", "event_types"))
    if "since" not in data:
        raise validation_error("since is required", "since")
    since = _moment(data["since"], "since")
    until = _moment(data["until"], "until") if "until" in data else datetime.now(UTC)
    if until <= since:
        raise validation_error("until must be after since", "until")
    types = validation.event_types(data.get("event_types", []))
    return since, until, types


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def start_replay(request: web.Request) -> web.Response:
    """``POST /api/subscriptions/{id}/replay/``: 202 with the job (``count`` once known)."""
    gw = gateway(request)
    sub_id = request.match_info["id"]
    sub = gw.subscription(sub_id)
    since, until, types = _window(await request.read())
    loop = asyncio.get_running_loop()
    try:
        reader = await loop.run_in_executor(
            None, WindowReader, gw.settings, gw.ingest_topic, _ms(since), _ms(until)
        )
    except Exception as exc:  # Kafka did not answer the offset look-ups
        log.warning("replay: cannot read %s: %s", gw.ingest_topic, exc)
        raise unavailable("Kafka did not answer; retry later") from None
    job_id = str(uuid.uuid4())
    pool = request.app[POOL]
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                _INSERT, uuid.UUID(job_id), uuid.UUID(sub.id), since, until, types, reader.total
            )
    except (*DB_DOWN, asyncpg.PostgresError) as exc:
        await loop.run_in_executor(None, reader.close)
        log.warning("replay: cannot record the job: %s", exc)
        raise unavailable("the status database is unavailable", "database_unavailable") from None
    job = _Job(gw, pool, job_id, sub, (since, until), types, reader)
    task = asyncio.create_task(job.run(), name=f"replay-{job_id}")
    jobs = request.app[JOBS]
    jobs.add(task)
    task.add_done_callback(jobs.discard)
    count = None
    if reader.total <= INLINE_RECORDS:
        await asyncio.shield(task)
        count = job.count if job.state == "done" else None
    return json_response(
        {
            "id": job_id,
            "status": "accepted",
            "state": job.state,
            "total": reader.total,
            "count": count,
        },
        202,
    )


@contextlib.asynccontextmanager
async def _db(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    try:
        async with request.app[POOL].acquire() as conn:
            yield conn
    except DB_DOWN:
        raise unavailable(
            "the status database is unavailable; retry later", "database_unavailable"
        ) from None


async def replay_status(request: web.Request) -> web.Response:
    """``GET /api/replays/{job_id}/``: the job and its progress."""
    text = request.match_info["job_id"]
    try:
        job_id = uuid.UUID(text)
    except ValueError:
        raise not_found(f"no replay job {text!r}") from None
    async with _db(request) as conn:
        row = await conn.fetchrow(_SELECT, job_id)
    if row is None:
        raise not_found(f"no replay job {text!r}")
    return json_response(job_view(row))


def job_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "subscription_id": str(row["subscription_id"]),
        "state": row["state"],
        "since": records.iso(row["since"]),
        "until": records.iso(row["until"]),
        "event_types": list(row["event_types"]),
        "count": row["count"],
        "scanned": row["scanned"],
        "total": row["total"],
        "error": row["error"],
        "created_at": records.iso(row["created_at"]),
        "updated_at": records.iso(row["updated_at"]),
    }


# --- the job ----------------------------------------------------------------------------------


class _Job:
    """One replay: reads the window, produces the subscription's webhooks again."""

    def __init__(
        self,
        gw: Gateway,
        pool: asyncpg.Pool,
        job_id: str,
        sub: Subscription,
        window: tuple[datetime, datetime],
        types: list[str],
        reader: WindowReader,
    ) -> None:
        self.gw, self.pool, self.id, self.sub, self.reader = gw, pool, job_id, sub, reader
        self.since_ms, self.until_ms = _ms(window[0]), _ms(window[1])
        self.types = frozenset(types)
        self.seen: set[str] = set()  # webhook ids already produced
        self.scanned = 0
        self.count = 0
        self.state = "running"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        error = None
        try:
            while True:
                batch = await loop.run_in_executor(None, self.reader.batch)
                if not batch:
                    break
                await self._replay(batch)
                await self._save(None)
            self.state = "done"
        except asyncio.CancelledError:
            self.state, error = "failed", "the gateway stopped before the job ended"
            raise
        except Exception as exc:
            self.state, error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("replay %s failed: %s", self.id, error)
        finally:
            await loop.run_in_executor(None, self.reader.close)
            with contextlib.suppress(Exception):
                await self._save(error)
            log.info("replay %s %s: %d re-delivered", self.id, self.state, self.count)

    async def _save(self, error: str | None) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                _PROGRESS, uuid.UUID(self.id), self.scanned, self.count, self.state, error
            )

    async def _replay(self, batch: list[Message]) -> None:
        found = []
        for msg in batch:
            self.scanned += 1
            webhook = self._webhook(msg)
            if webhook is not None:
                self.seen.add(webhook.webhook_id)
                found.append(webhook)
        if not found:
            return
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _STANDING, [w.webhook_id for w in found], self.gw.settings.retention_ms
            )
        standing = {r["id"]: (r["attempt_count"], r["progress"] // CHAIN_SPAN) for r in rows}
        sends = []
        for webhook in found:
            attempts, chain = standing.get(webhook.webhook_id, (0, 0))
            try:
                record = replay_record(webhook, self.id, attempts, chain)
            except ApiError as exc:  # attempt or chain numbers used up
                log.warning("replay %s: %s", self.id, exc.detail)
                continue
            sends.append(redelivery.send(self.gw, record))
        results = await asyncio.gather(*sends, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.count += len(results) - len(failed)
        if failed:
            reason = failed[0]
            detail = reason.detail if isinstance(reason, ApiError) else str(reason)
            raise RuntimeError(f"{len(failed)} record(s) not acknowledged: {detail}")

    def _webhook(self, msg: Message) -> Webhook | None:
        """The webhook ``msg`` holds for this subscription, or None when it holds none (another
        subscription's, outside the window or the event types, already replayed)."""
        kind, stamp = msg.timestamp()
        if kind and not self.since_ms <= stamp < self.until_ms:
            return None
        topic, partition = record_tp(msg)
        offset = record_offset(msg)
        try:
            webhook = records.parse_webhook(
                msg.value(),
                record_headers(msg),
                records.derived_id(topic, f"{partition}/{offset}"),
                records.iso(datetime.fromtimestamp(stamp / 1000, UTC)),
                check_body=False,
            )
        except RecordError:
            return None  # the agent dead-lettered it; nothing to deliver
        if self.types and webhook.event_type not in self.types:
            return None
        if webhook.subscription_id is None:  # a fan-out record: the agent expands it
            if not self.sub.accepts(webhook.event_type):
                return None
            webhook = webhook.replace(
                subscription_id=self.sub.id,
                webhook_id=records.derived_id(webhook.webhook_id, self.sub.id),
            )
        elif webhook.subscription_id != self.sub.id:
            return None
        if webhook.webhook_id in self.seen:
            return None
        return webhook
