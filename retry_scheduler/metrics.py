"""Prometheus metrics of the retry scheduler."""

from prometheus_client import Counter, Gauge, Histogram

from webhookmaster.dead_lettered import DEAD_LETTERED as DEAD_LETTERED

LATENESS = Histogram(
    "webhookmaster_retry_lateness_seconds",
    "How late a retry was handed back (acknowledged) against its due time.",
    ["tier"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
HANDED_BACK = Counter(
    "webhookmaster_retries_handed_back_total",
    "Retry records handed back to the due topic.",
    ["tier"],
)
BACKLOG = Gauge(
    "webhookmaster_retry_backlog",
    "Records waiting in a retry tier (high watermark minus position), per tier.",
    ["tier"],
)
PAUSES = Counter(
    "webhookmaster_retry_partition_pauses_total",
    "Times a tier partition was paused because it held HOLD_HIGH records.",
)
DEAD_LETTERED.labels("refused")  # a hand-back Kafka refused for good (exported at 0)
