"""Topic catalogue: the single source of truth for topic names and configs.

Names are ``<prefix><suffix>``; the prefix comes from ``WM_TOPIC_PREFIX``.
"""

from __future__ import annotations

from dataclasses import dataclass

RETENTION_72H_MS = 259_200_000
# Largest record value: a 1 MiB body (the gateway's default limit) plus its JSON envelope.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024

INGEST = "ingest"
DUE = "due"  # retries that fell due: the agents read them before the ingest topic
ATTEMPTS = "attempts"
DEAD_LETTER = "deadletter"
SUBSCRIPTIONS = "subscriptions"
OPERATOR_EVENTS = "operator-events"
CIRCUITS = "circuits"
IDEMPOTENCY = "idempotency"  # ids of marked first attempts, co-partitioned with ingest
IDEMPOTENCY_WINDOW_MS = 86_400_000  # WM_IDEMPOTENCY_WINDOW's default (24 h)
PARKED = "parked"  # FIFO subscriptions: webhooks queued behind their ordering key, and its state

# The retry ladder's tiers: (topic suffix, delay in seconds). Five retries after the first attempt.
RETRY_TIERS: tuple[tuple[str, int], ...] = (
    ("retry.10s", 10),
    ("retry.30s", 30),
    ("retry.1m", 60),
    ("retry.5m", 300),
    ("retry.15m", 900),
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic: full name, partition count and topic-level configs."""

    name: str
    partitions: int
    config: dict[str, str]
    purpose: str


def catalogue(
    prefix: str = "webhookmaster.",
    partitions: int = 6,
    retention_ms: int = RETENTION_72H_MS,
    idempotency_ms: int = IDEMPOTENCY_WINDOW_MS,
) -> list[TopicSpec]:
    """Every topic WebhookMaster uses, with its configs (``idempotency_ms``: how long the
    idempotency topic keeps a claim, WM_IDEMPOTENCY_WINDOW)."""
    data = {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms),
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }
    specs = [
        TopicSpec(
            name(prefix, INGEST),
            partitions,
            dict(data),
            "Webhooks accepted for delivery (gateway or direct producers).",
        ),
        TopicSpec(
            name(prefix, DUE),
            partitions,
            dict(data),
            "Retries that fell due, handed back by the scheduler; agents read them first.",
        ),
    ]
    specs.append(
        TopicSpec(
            name(prefix, PARKED),
            partitions,
            dict(data),
            "FIFO subscriptions: each ordering key's queue and its head's progress, on the "
            "partition of the ingest records it came from (docs/ordering.md).",
        )
    )
    for suffix, delay in RETRY_TIERS:
        specs.append(
            TopicSpec(
                name(prefix, suffix),
                partitions,
                dict(data),
                f"Webhooks waiting {delay} s before their next attempt.",
            )
        )
    specs += [
        TopicSpec(
            name(prefix, DEAD_LETTER),
            partitions,
            dict(data),
            "Webhooks that failed for good, and records that could not be read.",
        ),
        TopicSpec(
            name(prefix, ATTEMPTS),
            partitions,
            dict(data),
            "One event per delivery attempt, with its outcome.",
        ),
        # Compacted state: retention.ms is set like every topic but, with cleanup.policy=compact
        # alone, Kafka never deletes the latest record of a key by age; tombstones go after
        # delete.retention.ms. Segments roll hourly, so that records superseded by a rewrite
        # (a secret once in plain text, or under a retired key) are compacted away within hours,
        # not only when a 1 GB segment fills or after the broker's 7-day default.
        TopicSpec(
            name(prefix, SUBSCRIPTIONS),
            1,
            {
                "cleanup.policy": "compact",
                "retention.ms": str(retention_ms),
                "min.compaction.lag.ms": "0",
                "delete.retention.ms": "86400000",
                "segment.ms": "3600000",
            },
            "Subscriptions by id (compacted; a tombstone deletes).",
        ),
        TopicSpec(
            name(prefix, CIRCUITS),
            1,
            {
                "cleanup.policy": "compact",
                "retention.ms": str(retention_ms),
                "min.compaction.lag.ms": "0",
                "delete.retention.ms": "86400000",
                "segment.ms": "3600000",
            },
            "Circuit breaker state by subscription id, written by the agent that owns it "
            "(compacted).",
        ),
        TopicSpec(
            name(prefix, OPERATOR_EVENTS),
            1,
            dict(data),
            "Events for operators, e.g. a subscription a delivery agent disabled.",
        ),
        # Co-partitioned with ingest (same partition count; partition p holds the claims of
        # ingest partition p): key the webhook id, value the claiming record's offset. Compacted
        # (one claim per id) and deleted after the idempotency window.
        TopicSpec(
            name(prefix, IDEMPOTENCY),
            partitions,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(idempotency_ms),
                "min.compaction.lag.ms": "0",
                "segment.ms": "3600000",
            },
            "Ids of first attempts that carry the idempotency marker, per ingest partition: "
            "the agents' de-duplication state (compacted, kept for WM_IDEMPOTENCY_WINDOW).",
        ),
    ]
    return specs


def name(prefix: str, suffix: str) -> str:
    """Full topic name for a catalogue suffix."""
    return prefix + suffix
