"""The local stack as a user drives it: ``webhookmaster stack up/down/status`` in a process of
its own, with its own state folder and ports, against real Kafka and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devstack import kafka_broker
from schemas.topics import INGEST
from tests.support.env import private_stack_env
from tests.support.processes import run_cli
from tests.support.records import produce
from tests.support.topics import consume
from webhookmaster import settings as settings_mod
from webhookmaster.settings import Settings


@pytest.fixture
def stack_env(base_settings: Settings) -> Iterator[dict[str, str]]:
    """A second, private stack: own state folder and ports, the shared jar cache. The folder
    sits in the project (not pytest's private tmp) so that the postgres user may enter it."""
    with private_stack_env(
        "stack-test", WM_CACHE_DIR=base_settings.cache_dir, WM_TOPIC_PARTITIONS="2"
    ) as env:
        yield env


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("webhookmaster: error: ")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr


def test_restart_keeps_topics_records_and_rows(
    stack_env: dict[str, str], base_settings: Settings
) -> None:
    settings = settings_mod.load(stack_env)
    up = run_cli(stack_env, "stack", "up", "--infra")
    assert up.returncode == 0, up.stderr
    assert "kafka      started" in up.stdout and "postgres   started" in up.stdout
    try:
        again = run_cli(stack_env, "stack", "up", "--infra")  # idempotent
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout and "0 created" in again.stdout

        topic = settings.topic(INGEST)
        produce(settings, [(INGEST, str(i), f"record-{i}".encode()) for i in range(10)])

        import asyncio

        async def write_row() -> None:
            conn = await asyncpg.connect(settings.dsn)
            await conn.execute(
                "INSERT INTO subscriptions (id, target_url, created_at, updated_at)"
                " VALUES (gen_random_uuid(), 'http://x.test/', now(), now())"
            )
            await conn.close()

        async def count_rows() -> int:
            conn = await asyncpg.connect(settings.dsn)
            try:
                return await conn.fetchval("SELECT count(*) FROM subscriptions")
            finally:
                await conn.close()

        asyncio.run(write_row())

        down = run_cli(stack_env, "stack", "down")
        assert down.returncode == 0
        assert "kafka      stopped" in down.stdout and "postgres   stopped" in down.stdout
        status = run_cli(stack_env, "stack", "status")
        assert "kafka      stopped" in status.stdout and "postgres   stopped" in status.stdout
        assert not kafka_broker.responds(settings, timeout=1)
        # stopping this stack left the session's shared broker alone
        assert kafka_broker.responds(base_settings)

        up2 = run_cli(stack_env, "stack", "up", "--infra")
        assert up2.returncode == 0, up2.stderr
        assert "0 created" in up2.stdout
        values = sorted(m.value().decode() for m in consume(settings, topic, 10))
        assert values == sorted(f"record-{i}" for i in range(10))
        assert asyncio.run(count_rows()) == 1
    finally:
        run_cli(stack_env, "stack", "down")


def test_down_when_nothing_runs(stack_env: dict[str, str]) -> None:
    result = run_cli(stack_env, "stack", "down")
    assert result.returncode == 0
    assert result.stdout.strip() == "nothing was running"


def test_port_taken_is_one_clear_line(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli({**stack_env, "WM_KAFKA_PORT": str(port)}, "stack", "up", "--infra")
    assert_one_error_line(result, f"port {port}", "already in use", "WM_KAFKA_PORT")


def test_missing_java_is_one_clear_line(stack_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli({**stack_env, "WM_JAVA": str(tmp_path / "no-java")}, "stack", "up", "--infra")
    assert_one_error_line(result, "Java 17+ not found", "WM_JAVA")


def test_old_java_is_refused(stack_env: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    result = run_cli({**stack_env, "WM_JAVA": str(fake)}, "stack", "up", "--infra")
    assert_one_error_line(result, "Java 17+", "Java 11")


def test_maven_offline_is_one_clear_line(stack_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        **stack_env,
        "WM_CACHE_DIR": str(tmp_path / "empty-cache"),
        "WM_MAVEN_ARGS": f"-o -Dmaven.repo.local={tmp_path / 'empty-m2'}",
    }
    result = run_cli(env, "stack", "up", "--infra")
    assert_one_error_line(result, "Maven could not fetch", "offline")


def test_broker_that_dies_at_start_prints_its_log(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "WM_KAFKA_HEAP": "-Xmx1m -Xms1m"}  # the JVM cannot start
    result = run_cli(env, "stack", "up", "--infra")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("webhookmaster: error: Kafka did not become ready")
    assert "heap" in result.stderr  # the JVM's own complaint, from the tail of the broker log
    assert "Traceback" not in result.stderr
