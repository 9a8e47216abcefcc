"""The root of the test tree: registers the fixture plugins of tests/support/ and marks the
broker-free tests ``unit``. Test modules never import from here; what they share is in
tests/support/."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.fixtures_infra",  # the session's broker and database, per-test settings
    "tests.support.fixtures_http",  # a live gateway, receivers
    "tests.support.fixtures_processes",  # components as real processes
    "tests.support.fixtures_kafka_leaks",  # no test may leave a Kafka client running
]

INFRA_FIXTURES = frozenset({"base_settings"})  # every broker/database fixture depends on it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``unit`` every test that uses no fixture of the shared broker and database
    (``pytest -m unit`` runs them in seconds, with no Kafka or PostgreSQL started)."""
    for item in items:
        if INFRA_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.unit)
