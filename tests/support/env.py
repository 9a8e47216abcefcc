"""The environment of the session's test broker and database (``WM_TEST_*`` pick the ports and
state folder), and a clean process environment for the components the tests start."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port
from webhookmaster.settings import PROJECT_ROOT

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


def state_dir(tag: str) -> Path:
    """A state folder in the project (the postgres user may enter it, unlike pytest's tmp)."""
    return PROJECT_ROOT / ".wm-state" / tag


@contextlib.contextmanager
def private_stack_env(tag: str, **extra: str) -> Iterator[dict[str, str]]:
    """The environment of a stack of the test's own (never the session's): a fresh state folder
    ``<tag>-<random>`` (see :func:`state_dir`), free Kafka and PostgreSQL ports, plus ``extra``;
    the folder is removed afterwards (stop what runs in it first)."""
    state = state_dir(f"{tag}-{uuid.uuid4().hex[:8]}")
    try:
        yield clean_env(
            WM_STATE_DIR=str(state),
            WM_KAFKA_PORT=str(free_port()),
            WM_KAFKA_CONTROLLER_PORT=str(free_port()),
            WM_PG_PORT=str(free_port()),
            **extra,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
