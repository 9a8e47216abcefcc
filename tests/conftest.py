"""Shared fixtures: one real Kafka broker and one real PostgreSQL per test session (started by
the project's own stack code), isolated per test by a unique topic prefix and a fresh schema."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from devstack import local
from tests.receiver import Receiver
from webhookmaster import secret_box
from webhookmaster import settings as settings_mod
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from tests.gateway_helpers import LiveGateway

pytest_plugins = ["tests.kafka_leaks"]  # no test may leave a Kafka client running

TEST_STATE_DIR = os.environ.get("WM_TEST_STATE_DIR", str(PROJECT_ROOT / ".wm-state" / "test"))
TEST_ENV = {
    "WM_STATE_DIR": TEST_STATE_DIR,
    "WM_KAFKA_PORT": os.environ.get("WM_TEST_KAFKA_PORT", "19092"),
    "WM_KAFKA_CONTROLLER_PORT": os.environ.get("WM_TEST_KAFKA_CONTROLLER_PORT", "19093"),
    "WM_PG_PORT": os.environ.get("WM_TEST_PG_PORT", "19432"),
    "WM_TOPIC_PARTITIONS": "3",
    "WM_LOG_LEVEL": "INFO",
    # Subscription secrets are encrypted with this key; base_settings writes it (0600).
    "WM_SECRET_KEYS_FILE": str(Path(TEST_STATE_DIR) / "secret-keys"),
}


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any WM_* variable, plus the session's secret key file
    (every gateway and agent needs a key; base_settings writes it), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WM_")}
    env["WM_SECRET_KEYS_FILE"] = TEST_ENV["WM_SECRET_KEYS_FILE"]
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings of the session's shared broker and database, which this fixture starts."""
    settings = settings_mod.load(clean_env(**TEST_ENV))
    local.start_infra(settings)
    secret_box.ensure_key_file(Path(settings.secret_keys_file))
    return settings


@pytest.fixture
def wm_settings(base_settings: Settings) -> Iterator[Settings]:
    """Settings isolated for one test: unique topic prefix (topics created) and a fresh schema."""
    tag = uuid.uuid4().hex[:10]
    settings = settings_mod.load(
        clean_env(**TEST_ENV), topic_prefix=f"t{tag}.", db_schema=f"t_{tag}"
    )
    topics_admin.ensure_topics(settings)
    asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    yield settings
    asyncio.run(_drop_schema(settings))
    topics_admin.delete_topics(settings)  # keeps the session's broker small


async def _drop_schema(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.dsn)
    try:
        schema = migrate.quote_ident(settings.db_schema)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def db(wm_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search_path is the test's schema."""
    conn = await asyncpg.connect(
        wm_settings.dsn, server_settings={"search_path": wm_settings.db_schema}
    )
    yield conn
    await conn.close()


@pytest.fixture
async def gateway(wm_settings: Settings) -> AsyncIterator[LiveGateway]:
    """A real ingest gateway for the test's settings on a free loopback port, ready (table
    loaded, Kafka answering), with a client session (tests/gateway_helpers.py)."""
    from tests.gateway_helpers import running_gateway

    async with running_gateway(wm_settings) as live:
        yield live


@pytest.fixture
def settings(wm_settings: Settings) -> Settings:
    """Delivery settings: loopback targets allowed, a one-second ladder, short timeouts (a test
    module may define its own)."""
    return dataclasses.replace(
        wm_settings,
        allowed_cidrs="127.0.0.0/8",
        retry_ladder="1,1,1,1,1",
        request_timeout_s=2.0,
        connect_timeout_s=1.0,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on a free loopback port (tests/receiver.py)."""
    rx = await Receiver().start()
    yield rx
    await rx.stop()


INFRA_FIXTURES = frozenset({"base_settings"})  # every broker/database fixture depends on it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``unit`` every test that uses no fixture of the shared broker and database
    (``pytest -m unit`` runs them in seconds, with no Kafka or PostgreSQL started)."""
    for item in items:
        if INFRA_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.unit)
