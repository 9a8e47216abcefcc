"""Prometheus metrics of the status projector (default registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "webhookmaster_projector_events_total",
    "Records projected into PostgreSQL, by topic.",
    ["topic"],
)
for _topic in ("ingest", "due", "attempts", "deadletter", "subscriptions"):  # 0 at the start
    EVENTS.labels(_topic)
SKIPPED = Counter(
    "webhookmaster_projector_skipped_total",
    "Records not projected, by topic and reason (invalid, expired, refused by PostgreSQL).",
    ["topic", "reason"],
)
BATCH_SIZE = Histogram(
    "webhookmaster_projector_batch_size",
    "Records per written batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "webhookmaster_projector_batch_seconds",
    "Time to write one batch (one transaction), retries included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAG_SECONDS = Gauge(
    "webhookmaster_projector_lag_seconds",
    "Seconds between now and the Kafka timestamp of the newest record of the last written batch.",
)
CONSUMER_LAG = Gauge(
    "webhookmaster_projector_consumer_lag_records",
    "Records on the assigned partitions not yet projected (high watermark - position).",
)
DB_UP = Gauge(
    "webhookmaster_projector_db_up", "1 when the last PostgreSQL operation succeeded, else 0."
)
DB_RETRIES = Counter(
    "webhookmaster_projector_db_retries_total", "Batch writes retried because PostgreSQL failed."
)
RETENTION_ROWS = Counter(
    "webhookmaster_projector_retention_rows_removed_total",
    "Rows removed by retention, by table.",
    ["table"],
)
RETENTION_PARTITIONS = Counter(
    "webhookmaster_projector_retention_partitions_dropped_total", "Partitions dropped by retention."
)
