"""Fixtures of components run as real processes: ``make_component`` starts as many as a test
asks for (logs in the test's tmp_path) and kills any still running at the test's end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ComponentProcess
from webhookmaster.settings import Settings

MakeComponent = Callable[..., ComponentProcess]


@pytest.fixture
def make_component(tmp_path: Path) -> Iterator[MakeComponent]:
    """``make_component(name, settings, **env)``: ``webhookmaster <name>`` started with the
    settings' environment plus ``env``; each process logs to ``<tmp_path>/<name>-<n>.log``."""
    started: list[ComponentProcess] = []

    def make(name: str, settings: Settings, **env: str) -> ComponentProcess:
        log = tmp_path / f"{name}-{sum(c.name == name for c in started)}.log"
        started.append(ComponentProcess(name, settings, log, **env).start())
        return started[-1]

    yield make
    for component in started:
        component.ensure_stopped()
