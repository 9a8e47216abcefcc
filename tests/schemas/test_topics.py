"""The topic catalogue (schemas/topics.py) under a prefix, as the settings name topics and
groups."""

from __future__ import annotations

from schemas import topics
from webhookmaster import settings as settings_mod


def test_topic_names_come_from_the_catalogue_under_the_prefix() -> None:
    settings = settings_mod.load({"WM_TOPIC_PREFIX": "p1."})
    assert settings.topic(topics.INGEST) == "p1.ingest"
    assert settings.group("agents") == "p1.agents"
    suffixes = [
        topics.INGEST,
        topics.DUE,
        topics.PARKED,
        *(s for s, _ in topics.RETRY_TIERS),
        topics.DEAD_LETTER,
        topics.ATTEMPTS,
        topics.SUBSCRIPTIONS,
        topics.CIRCUITS,
        topics.OPERATOR_EVENTS,
        topics.IDEMPOTENCY,
    ]
    assert [spec.name for spec in topics.catalogue("p1.")] == [settings.topic(s) for s in suffixes]
