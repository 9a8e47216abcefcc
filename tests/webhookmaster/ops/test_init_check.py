"""``webhookmaster init --check`` (what the Helm chart's init containers wait on), as a real process
against the real broker and PostgreSQL: it fails while topics or migrations are missing, changes
nothing, and passes once ``webhookmaster init`` has run."""

from __future__ import annotations

import subprocess
import uuid

from tests.support.db import drop_schema
from tests.support.env import TEST_ENV, clean_env
from tests.support.processes import run_cli
from tests.support.waiting import eventually
from webhookmaster import settings as settings_mod
from webhookmaster.kafka_clients import admin_client
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import Settings


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(clean_env(**settings_mod.to_env(settings)), *args, timeout=120)


async def pending(settings: Settings) -> list[int]:
    return await migrate.pending_url(settings.dsn, settings.db_schema)


async def test_check_fails_until_init_has_run(base_settings: Settings) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = settings_mod.load(
        clean_env(**TEST_ENV), topic_prefix=f"c{tag}.", db_schema=f"c_{tag}"
    )
    names = [s.name for s in topics_admin.topic_specs(settings)]
    versions = [v for v, _, _ in migrate.migration_files()]
    try:
        before = run(settings, "init", "--check")
        assert before.returncode == 1, before.stdout + before.stderr
        assert f"missing topics: {', '.join(names)}" in before.stdout
        assert f"pending migrations: {versions}" in before.stdout
        # the check changed nothing
        assert topics_admin.missing_topics(settings) == names
        assert await pending(settings) == versions

        assert run(settings, "init").returncode == 0
        after = run(settings, "init", "--check")
        assert after.returncode == 0, after.stdout + after.stderr
        assert "initialised" in after.stdout

        # one topic gone: not initialised again, and only that topic is named
        admin = admin_client(settings)
        admin.delete_topics([names[0]])[names[0]].result(30)
        del admin
        assert await eventually(
            lambda: topics_admin.missing_topics(settings) == [names[0]], timeout=60
        )
        gone = run(settings, "init", "--check")
        assert gone.returncode == 1
        assert f"missing topics: {names[0]};" in gone.stdout
        assert "pending migrations: none" in gone.stdout
    finally:
        await drop_schema(settings)
        topics_admin.delete_topics(settings)
