"""The retry ladder: after failed attempt k (1..5) a webhook waits in tier k, then is tried
again; attempt 6 failing is final. Delays default to 10 s, 30 s, 1 m, 5 m, 15 m
(``WM_RETRY_LADDER``); a ``Retry-After`` moves the webhook to the first tier at least that long
(never to an earlier tier than the ladder's own)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from schemas.topics import RETRY_TIERS, name

MAX_ATTEMPTS = len(RETRY_TIERS) + 1  # the first attempt and five retries
DUE_HEADER = "wm-due-ms"  # epoch milliseconds when a retry record is due


@dataclass(frozen=True)
class Tier:
    index: int
    topic: str
    delay_s: float


def parse_delays(ladder: str) -> tuple[float, ...]:
    """The five delays (seconds) of the ``WM_RETRY_LADDER`` text ("10,30,60,300,900");
    ValueError unless it holds exactly five positive finite numbers."""
    try:
        delays = tuple(float(part) for part in ladder.split(",") if part.strip())
    except ValueError:
        delays = ()
    if len(delays) != len(RETRY_TIERS) or not all(0 < d < math.inf for d in delays):
        raise ValueError(
            f"needs {len(RETRY_TIERS)} positive delays in seconds, "
            f"comma-separated, e.g. 10,30,60,300,900"
        )
    return delays


def tiers(prefix: str, ladder: str) -> list[Tier]:
    """The tiers with their topics and delays, from the ``WM_RETRY_LADDER`` text."""
    try:
        delays = parse_delays(ladder)
    except ValueError as exc:
        raise ValueError(f"WM_RETRY_LADDER {exc}: {ladder!r}") from None
    return [
        Tier(i, name(prefix, suffix), delay)
        for i, ((suffix, _), delay) in enumerate(zip(RETRY_TIERS, delays, strict=True))
    ]


def next_tier(ladder: list[Tier], attempt: int, retry_after_s: float | None = None) -> Tier | None:
    """Tier for a webhook whose attempt number ``attempt`` (1-based) just failed; None when that
    was the last attempt."""
    if attempt >= MAX_ATTEMPTS:
        return None
    tier = ladder[attempt - 1]
    if retry_after_s is not None and retry_after_s > tier.delay_s:
        longer = [t for t in ladder if t.delay_s >= retry_after_s]
        tier = longer[0] if longer else ladder[-1]
    return tier


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
