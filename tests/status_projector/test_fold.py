"""Property test of the projector's fold (status_projector/ordering.py): upserting ``fold(changes)``
leaves the same webhooks row as upserting each change in order, in the real PostgreSQL.

The changes are drawn as the decoders make them (status_projector/changes.py): only an attempt
event carries a status code (``code_from_attempt``); ingest and dead-letter changes carry none.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import Status
from status_projector import partitions
from status_projector.changes import day_of
from status_projector.ordering import UPSERT_WEBHOOK, WebhookChange, fold, progress, webhook_args
from webhookmaster.settings import Settings

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SUB = uuid.UUID("00000000-0000-4000-8000-000000000001")
MOMENTS = [CREATED + timedelta(seconds=s) for s in (0, 1, 2, 60)]
COLUMNS = (
    "subscription_id",
    "event_type",
    "payload",
    "body",
    "metadata",
    "status",
    "progress",
    "attempt_count",
    "last_status_code",
    "last_error",
    "next_retry_at",
    "delivered_at",
    "updated_at",
)


def maybe(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | values


@st.composite
def changes_of_one_row(draw: st.DrawFn) -> WebhookChange:
    """One change of the row: any delivery chain, status and step (ties included), an attempt
    event with its status code or an event without one, optional fields unset or set from
    small pools."""
    status = draw(st.sampled_from(tuple(Status)))
    step = draw(st.sampled_from([0, 5, 10, 15, 20, 25, 30, 1000]))
    from_attempt = draw(st.booleans())
    return WebhookChange(
        id="",
        created_at=CREATED,
        subscription_id=draw(maybe(st.just(SUB) | st.builds(uuid.uuid4))),
        event_type=draw(maybe(st.sampled_from(["a", "b"]))),
        payload=draw(maybe(st.sampled_from(['{"n": 1}', '{"n": 2}']))),
        body=draw(maybe(st.sampled_from([b'{"n": 1}', b'{"n":2}']))),
        metadata=draw(maybe(st.sampled_from(["{}", '{"source": "api"}']))),
        status=status,
        progress=progress(status, step, draw(st.integers(0, 2))),
        attempt_count=draw(st.integers(0, 4)),
        last_status_code=draw(maybe(st.sampled_from([200, 404, 500]))) if from_attempt else None,
        code_from_attempt=from_attempt,
        last_error=draw(maybe(st.sampled_from(["timeout", "refused"]))),
        next_retry_at=draw(maybe(st.sampled_from(MOMENTS))),
        delivered_at=draw(maybe(st.sampled_from(MOMENTS))),
        updated_at=draw(st.sampled_from(MOMENTS)),
    )


async def _upsert(conn: asyncpg.Connection, row_id: str, changes: list[WebhookChange]) -> dict:
    for change in changes:
        change.id = row_id
        await conn.execute(UPSERT_WEBHOOK, *webhook_args(change))
    row = await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM webhooks WHERE id = $1", row_id)
    assert row is not None
    return dict(row)


async def _check(conn: asyncpg.Connection, changes: list[WebhookChange]) -> None:
    one_by_one = await _upsert(conn, uuid.uuid4().hex, [replace(c) for c in changes])
    folded = fold([replace(c) for c in changes])
    assert len(folded) <= len(changes)
    assert await _upsert(conn, uuid.uuid4().hex, folded) == one_by_one, (changes, folded)


def _run_property(wm_settings: Settings, order_by_progress: bool) -> None:
    """Check the property on 200 drawn sequences, on one connection on a loop of its own."""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(
        asyncpg.connect(wm_settings.dsn, server_settings={"search_path": wm_settings.db_schema})
    )
    checked = 0

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(changes_of_one_row(), min_size=1, max_size=6))
    def prop(changes: list[WebhookChange]) -> None:
        nonlocal checked
        if order_by_progress:  # the order write() folds in
            changes = sorted(changes, key=lambda c: c.progress)
        loop.run_until_complete(_check(conn, changes))
        checked += 1

    try:
        loop.run_until_complete(partitions.create(conn, {day_of(CREATED)}))
        prop()
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    assert checked >= 100


def test_fold_equals_upserting_each_change_in_order(wm_settings: Settings) -> None:
    """Any order of one row's changes (fold only merges neighbours)."""
    _run_property(wm_settings, order_by_progress=False)


def test_fold_equals_upserting_in_write_order(wm_settings: Settings) -> None:
    """The order write() uses: one row's changes sorted by progress."""
    _run_property(wm_settings, order_by_progress=True)
