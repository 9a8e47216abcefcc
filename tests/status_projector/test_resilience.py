"""The status projector loses nothing when it is killed mid-batch, when a second instance joins
and the first leaves, when PostgreSQL goes away, and when the broker restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from devstack import postgres_server
from status_projector.consumer import TOPICS as PROJECTED_TOPICS
from status_projector.consumer import ProjectorConsumer
from status_projector.store import Store
from tests.support.env import clean_env
from tests.support.ports import free_port
from tests.support.processes import ComponentProcess, start_projector
from tests.support.records import (
    count,
    new_id,
    now,
    produce,
    webhook_items,
)
from tests.support.waiting import eventually
from webhookmaster import settings as settings_mod
from webhookmaster.consumer_thread import Watchdog
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import PROJECT_ROOT, Settings


def delivered_webhooks(prefix: str, n: int, sub: str) -> list:
    """``n`` webhooks, each an ingest record and a delivered attempt (2n records)."""
    t0 = now() - timedelta(minutes=5)
    items = []
    for i in range(n):
        items += webhook_items(
            f"{prefix}-{i:05d}", sub, t0 + timedelta(milliseconds=i), ["delivered"]
        )
    return items


async def delivered(db: asyncpg.Connection, prefix: str) -> int:
    return await count(
        db, "webhooks", f"id LIKE '{prefix}-%' AND status = 'DELIVERED' AND payload IS NOT NULL"
    )


async def assert_exactly_once(db: asyncpg.Connection, prefix: str, n: int) -> None:
    assert await count(db, "webhooks", f"id LIKE '{prefix}-%'") == n
    assert await count(db, "delivery_attempts", f"webhook_id LIKE '{prefix}-%'") == n
    assert (
        await db.fetchval(f"SELECT count(DISTINCT id) FROM webhooks WHERE id LIKE '{prefix}-%'")
        == n
    )


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    wm_settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    n = 1000  # 2,000 records
    produce(wm_settings, delivered_webhooks("kill", n, new_id()))
    first = start_projector(wm_settings, tmp_path / "first.log", WM_PROJECTOR_BATCH_SIZE="40")
    try:
        await eventually(lambda: _at_least(db, "kill", 150), interval=0.02, what="some rows")
    finally:
        first.kill()
    at_kill = await delivered(db, "kill")
    assert at_kill < n, "the projector finished before the kill: nothing was tested"
    second = start_projector(wm_settings, tmp_path / "second.log")
    try:
        # the killed member holds its partitions until the broker fences it: KIP-848's
        # group.consumer.session.timeout.ms, 45 s by default
        await eventually(
            lambda: _at_least(db, "kill", n), timeout=90, what="every row after the restart"
        )
        await assert_exactly_once(db, "kill", n)
    finally:
        assert await second.terminate() == 0


async def _at_least(db: asyncpg.Connection, prefix: str, n: int) -> bool:
    return await delivered(db, prefix) >= n


async def test_two_instances_rebalance_and_project_everything_once(
    wm_settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    sub = new_id()
    first = start_projector(wm_settings, tmp_path / "first.log", WM_PROJECTOR_BATCH_SIZE="50")
    second = None
    try:
        await first.wait_ready()
        produce(wm_settings, delivered_webhooks("two-a", 500, sub))
        second = start_projector(wm_settings, tmp_path / "second.log", WM_PROJECTOR_BATCH_SIZE="50")
        await second.wait_ready()
        produce(wm_settings, delivered_webhooks("two-b", 500, sub))
        await eventually(lambda: _at_least(db, "two-b", 100), interval=0.02, what="second wave")
        assert await first.terminate() == 0  # leaves the group: its partitions move to the second
        produce(wm_settings, delivered_webhooks("two-c", 300, sub))
        for prefix, n in (("two-a", 500), ("two-b", 500), ("two-c", 300)):
            await eventually(lambda p=prefix, k=n: _at_least(db, p, k), what=f"all of {prefix}")
            await assert_exactly_once(db, prefix, n)
        assert second.metric("webhookmaster_projector_events_total") > 0
        # the shared bridge's gauge: the second now owns every partition of the four topics
        topics = {wm_settings.topic(t) for t in PROJECTED_TOPICS}
        owned = sum(s.partitions for s in topics_admin.topic_specs(wm_settings) if s.name in topics)
        await eventually(
            lambda: second.metric("webhookmaster_assigned_partitions") == owned,
            what=f"{owned} partitions assigned to the second projector",
        )
    finally:
        await first.terminate()
        if second is not None:
            assert await second.terminate() == 0


@pytest.fixture
def private_pg(base_settings: Settings, wm_settings: Settings) -> Iterator[Settings]:
    """The test's settings pointed at a PostgreSQL cluster of its own (free port, own
    folder), migrated; stopped and removed afterwards. Never the session's cluster."""
    state = PROJECT_ROOT / ".wm-state" / f"proj-pg-{uuid.uuid4().hex[:8]}"
    settings = settings_mod.load(
        settings_mod.to_env(wm_settings), state_dir=str(state), pg_port=free_port()
    )
    try:
        postgres_server.start(settings)
        asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
        yield settings
    finally:
        postgres_server.stop(settings)
        shutil.rmtree(state, ignore_errors=True)


async def test_postgres_outage_is_retried_and_caught_up(
    private_pg: Settings, tmp_path: Path
) -> None:
    settings = private_pg
    sub = new_id()
    projector = start_projector(settings, tmp_path / "first.log")
    try:
        await projector.wait_ready()
        produce(settings, delivered_webhooks("pg-a", 100, sub))
        async with _connect(settings) as db:
            await eventually(lambda: _at_least(db, "pg-a", 100), what="rows before the outage")
        postgres_server.stop(settings)
        produce(settings, delivered_webhooks("pg-b", 100, sub))  # written while PG is down
        await projector.wait_not_ready()
        await eventually(lambda: _logged(projector, "retrying in"), what="a logged retry")
        await asyncio.to_thread(postgres_server.start, settings)
        async with _connect(settings) as db:
            await eventually(lambda: _at_least(db, "pg-b", 100), what="catch-up after the outage")
        await projector.wait_ready()

        # down again, and the projector is stopped while it retries: nothing is committed
        postgres_server.stop(settings)
        produce(settings, delivered_webhooks("pg-c", 100, sub))
        await eventually(lambda: _logged(projector, "retrying in", 2), what="a second outage retry")
        assert await projector.terminate() == 0
    finally:
        await projector.terminate()
    await asyncio.to_thread(postgres_server.start, settings)
    restarted = start_projector(settings, tmp_path / "second.log")
    try:
        async with _connect(settings) as db:
            await eventually(lambda: _at_least(db, "pg-c", 100), what="rows after the restart")
            for prefix in ("pg-a", "pg-b", "pg-c"):
                await assert_exactly_once(db, prefix, 100)
    finally:
        assert await restarted.terminate() == 0


async def _logged(projector: ComponentProcess, text: str, times: int = 1) -> bool:
    return projector.log_path.read_text(errors="replace").count(text) >= times


class _connect:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> asyncpg.Connection:
        self.conn = await asyncpg.connect(
            self.settings.dsn, server_settings={"search_path": self.settings.db_schema}
        )
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "webhookmaster", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


async def test_projector_resumes_after_a_broker_restart(
    wm_settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """A private broker (its own state and ports; PostgreSQL is the session's, by URL): the
    projector runs through ``stack down`` / ``stack up`` of the broker.

    Bounds allow a loaded machine: the broker's restart, then librdkafka's reconnection, or,
    when the consumer came out of the restart stuck, the watchdog's replacement (stall_s and two
    checks) and the new member's join."""
    state = PROJECT_ROOT / ".wm-state" / f"proj-kafka-{uuid.uuid4().hex[:8]}"
    env = clean_env(
        **{
            **settings_mod.to_env(wm_settings),
            "WM_STATE_DIR": str(state),
            "WM_KAFKA_PORT": str(free_port()),
            "WM_KAFKA_CONTROLLER_PORT": str(free_port()),
            "WM_DATABASE_URL": wm_settings.dsn,
        }
    )
    settings = settings_mod.load(env)
    projector = None
    try:
        up = _cli(env, "stack", "up", "--infra")
        assert up.returncode == 0, up.stderr
        topics_admin.ensure_topics(settings)
        sub = new_id()
        projector = start_projector(settings, tmp_path / "projector.log")
        await projector.wait_ready(120)
        produce(settings, delivered_webhooks("br-a", 50, sub))
        await eventually(
            lambda: _at_least(db, "br-a", 50), timeout=90, what="rows before the restart"
        )

        down = _cli(env, "stack", "down")
        assert down.returncode == 0 and "kafka      stopped" in down.stdout, down.stdout
        up = _cli(env, "stack", "up", "--infra")
        assert up.returncode == 0, up.stderr
        produce(settings, delivered_webhooks("br-b", 50, sub))
        produced = time.monotonic()
        dog = Watchdog()
        bound = 90 + dog.stall_s + 2 * dog.check_every_s
        try:
            await eventually(
                lambda: _at_least(db, "br-b", 50), timeout=bound, what="rows after restart"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nprojector log:\n{projector.log()}") from None
        print(
            f"\nrows {time.monotonic() - produced:.1f} s after the restart; watchdog "
            f"replacements: {projector.log().count('replacing it')}"
        )
        await assert_exactly_once(db, "br-a", 50)
        await assert_exactly_once(db, "br-b", 50)
        assert projector.proc.poll() is None
    finally:
        if projector is not None:
            await projector.terminate()
        _cli(env, "stack", "down")
        shutil.rmtree(state, ignore_errors=True)


async def test_a_consumer_that_stops_fetching_is_replaced(
    wm_settings: Settings, db: asyncpg.Connection
) -> None:
    """The watchdog: a consumer that fetches nothing although records wait (here: its
    partitions paused behind its back, as librdkafka can leave them after a broker restart) is
    replaced, and the new one projects what waits; an idle healthy consumer is left alone."""
    dog = Watchdog(stall_s=1.0, check_every_s=0.5)
    store = Store(wm_settings)
    consumer = ProjectorConsumer(
        dataclasses.replace(wm_settings, projector_batch_wait_s=0.05), store, dog
    )
    task = asyncio.create_task(consumer.run())
    sub = new_id()
    try:
        produce(wm_settings, delivered_webhooks("wd-a", 20, sub))
        await eventually(
            lambda: _at_least(db, "wd-a", 20), timeout=60, what="rows of a healthy run"
        )
        idle_from = dog.checks
        await eventually(
            lambda: dog.checks >= idle_from + 3,
            timeout=30,
            what="three watchdog checks while idle",
        )
        assert dog.replaced == 0, "an idle consumer with nothing to read was replaced"

        bridge = consumer.bridge
        stuck = bridge._consumer
        await bridge.call(lambda: stuck.pause(stuck.assignment()))
        produce(wm_settings, delivered_webhooks("wd-b", 20, sub))
        await eventually(
            lambda: _at_least(db, "wd-b", 20),
            timeout=90,
            what="rows after the stuck consumer was replaced",
        )
        assert dog.replaced == 1 and bridge._consumer is not stuck
        await assert_exactly_once(db, "wd-a", 20)
        await assert_exactly_once(db, "wd-b", 20)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 60)
        await store.close()
