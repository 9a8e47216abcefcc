"""Prometheus metrics of a delivery agent."""

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from webhookmaster.dead_lettered import DEAD_LETTERED as DEAD_LETTERED

ATTEMPTS = Counter(
    "webhookmaster_delivery_attempts_total",
    "Delivery attempts by outcome and response status class.",
    ["outcome", "status_class"],
)
DURATION = Histogram(
    "webhookmaster_delivery_duration_seconds",
    "Duration of one delivery attempt (HTTP request and response excerpt).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
IN_FLIGHT = Gauge("webhookmaster_deliveries_in_flight", "Deliveries in flight in this process.")
END_TO_END = Histogram(
    "webhookmaster_end_to_end_seconds",
    "From ingest (received_at) to successful delivery.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
# Every kind exported from the start (at 0): rate() and increase() then see the first one.
for _kind in ("unreadable", "subscription", "exhausted", "error"):
    DEAD_LETTERED.labels(_kind)
INGEST_LAG = Gauge(
    "webhookmaster_ingest_lag_records",
    "Records on this agent's ingest partitions beyond its position (high watermark - position).",
)


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


@functools.lru_cache(maxsize=64)
def attempts(outcome: str, status: int | None) -> Any:
    """The attempts counter child for an outcome and a status (children kept, not looked up
    again on every delivery)."""
    return ATTEMPTS.labels(outcome, status_class(status))
