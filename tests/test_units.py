"""Unit tests of pure pieces: the retry ladder, the offset tracker, the SSRF address rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from delivery_agents.ssrf import allowed, parse_cidrs
from schemas import topics
from webhookmaster import settings as settings_mod
from webhookmaster.offsets import OffsetTracker
from webhookmaster.retry_ladder import MAX_ATTEMPTS, next_tier, parse_retry_after, tiers

LADDER = tiers("p.", "10,30,60,300,900")


def test_default_ladder_topics_and_delays() -> None:
    assert [(t.topic, t.delay_s) for t in LADDER] == [
        ("p.retry.10s", 10),
        ("p.retry.30s", 30),
        ("p.retry.1m", 60),
        ("p.retry.5m", 300),
        ("p.retry.15m", 900),
    ]
    assert MAX_ATTEMPTS == 6


def test_failed_attempt_k_goes_to_tier_k_and_six_is_final() -> None:
    assert [next_tier(LADDER, k).delay_s for k in range(1, 6)] == [10, 30, 60, 300, 900]
    assert next_tier(LADDER, 6) is None


def test_retry_after_picks_first_tier_at_least_that_long() -> None:
    assert next_tier(LADDER, 1, 45).delay_s == 60
    assert next_tier(LADDER, 1, 5).delay_s == 10  # never sooner than the ladder
    assert next_tier(LADDER, 3, 10_000).delay_s == 900  # capped at the last tier
    assert next_tier(LADDER, 6, 5) is None


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(
        format_datetime(now + timedelta(seconds=90), usegmt=True), now
    ) == pytest.approx(90)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_bad_ladder_is_refused() -> None:
    with pytest.raises(ValueError):
        tiers("p.", "10,30")
    with pytest.raises(ValueError):
        tiers("p.", "10,30,0,1,1")


def test_topic_names_come_from_the_catalogue_under_the_prefix() -> None:
    settings = settings_mod.load({"WM_TOPIC_PREFIX": "p1."})
    assert settings.topic(topics.INGEST) == "p1.ingest"
    assert settings.group("agents") == "p1.agents"
    suffixes = [
        topics.INGEST,
        *(s for s, _ in topics.RETRY_TIERS),
        topics.DEAD_LETTER,
        topics.ATTEMPTS,
        topics.SUBSCRIPTIONS,
        topics.CIRCUITS,
        topics.OPERATOR_EVENTS,
    ]
    assert [spec.name for spec in topics.catalogue("p1.")] == [settings.topic(s) for s in suffixes]


def test_tracker_commits_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    tp = ("t", 0)
    for offset in (5, 6, 7, 8):
        tracker.started(tp, offset)
    tracker.done(tp, 7)
    assert tracker.committable() == {}
    tracker.done(tp, 5)
    assert tracker.committable() == {tp: 6}
    tracker.done(tp, 6)
    assert tracker.committable() == {tp: 8}
    assert tracker.committable() == {}  # unchanged since the last call
    assert tracker.in_flight(tp) == 1
    tracker.forget(tp)
    tracker.done(tp, 8)  # a late completion for a revoked partition
    assert tracker.committable() == {}


@pytest.mark.parametrize(
    ("address", "cidrs", "ok"),
    [
        ("8.8.8.8", "", True),
        ("127.0.0.1", "", False),
        ("10.1.2.3", "", False),
        ("169.254.169.254", "", False),
        ("::1", "", False),
        ("::ffff:127.0.0.1", "", False),
        ("fd00::1", "", False),
        ("127.0.0.1", "127.0.0.0/8", True),
        ("10.1.2.3", "10.0.0.0/8,192.168.0.0/16", True),
    ],
)
def test_ssrf_address_rules(address: str, cidrs: str, ok: bool) -> None:
    assert allowed(address, parse_cidrs(cidrs)) is ok
