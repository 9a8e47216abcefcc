"""Fixtures of the shared infrastructure: one real Kafka broker and one real PostgreSQL per test
session (started by the project's own stack code), isolated per test by a unique topic prefix
and a fresh schema."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from devstack import local
from tests.support.db import drop_schema
from tests.support.env import TEST_ENV, clean_env
from tests.support.pipeline import create_subscription
from webhookmaster import secret_box
from webhookmaster import settings as settings_mod
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import Settings


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
    asyncio.run(drop_schema(settings))
    topics_admin.delete_topics(settings)  # keeps the session's broker small


@pytest.fixture
async def db(wm_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search_path is the test's schema."""
    conn = await asyncpg.connect(
        wm_settings.dsn, server_settings={"search_path": wm_settings.db_schema}
    )
    yield conn
    await conn.close()


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


MakeSubscription = Callable[..., str]


@pytest.fixture
def make_subscription(wm_settings: Settings) -> MakeSubscription:
    """``make_subscription(target_url, *, secret=None, event_types=None, active=True)``: a
    subscription record produced to the test's compacted topic, as the gateway writes it; its id."""
    return functools.partial(create_subscription, wm_settings)
