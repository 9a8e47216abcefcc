"""The retry ladder (webhookmaster/retry_ladder.py): tiers, their topics and delays, the tier a
failed attempt or a Retry-After answer leads to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

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
