"""Producing to Kafka from a request: wait for the acknowledgement, bounded, or answer 503."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message

from ingest_gateway import metrics
from ingest_gateway.errors import ApiError, unavailable
from ingest_gateway.state import Gateway
from webhookmaster.kafka_clients import ProduceError
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)

# librdkafka reports every record within this long, acknowledged or failed (its delivery report
# comes exactly once per record), so awaiting the acknowledgement is bounded by it ...
MESSAGE_TIMEOUT_MS = 10_000
# ... and a record that cannot even enter the full local queue gives up after this long.
QUEUE_WAIT_S = 2.0
# The local queue is bounded, so that a dead broker cannot pile records up in memory.
QUEUE_MAX_MESSAGES = 50_000
QUEUE_MAX_KBYTES = 65_536


def producer_extra(settings: Settings) -> dict[str, Any]:
    """The gateway's producer settings on top of the shared durable ones: a bounded wait for
    the acknowledgement, and room for a record around the largest accepted body (re-serialised
    JSON may be longer; the broker's limit applies to the compressed batch)."""
    return {
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
        "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
        "request.timeout.ms": 5_000,
        "message.max.bytes": max(1_000_000, 2 * settings.max_body_bytes + 65_536),
    }


def not_acknowledged() -> ApiError:
    return unavailable("Kafka did not acknowledge the record; nothing was accepted, retry later")


def kafka_down() -> ApiError:
    return unavailable("Kafka is unreachable; nothing was accepted, retry later")


def _refusal(exc: Exception) -> ApiError:
    if isinstance(exc, ProduceError) and exc.code == KafkaError.MSG_SIZE_TOO_LARGE:
        return ApiError(413, "payload_too_large", "the record is larger than Kafka accepts")
    return not_acknowledged()


async def produce(
    gw: Gateway,
    topic: str,
    label: str,
    key: str,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> Message:
    """Produce one record and return it once acknowledged (acks=all); 503 otherwise (413 when
    Kafka refuses the record's size). While the probe finds Kafka unreachable: 503 at once,
    nothing queued."""
    if gw.kafka_down:
        metrics.PRODUCE_ERRORS.labels(label).inc()
        raise kafka_down()
    started = time.perf_counter()
    try:
        msg = await gw.producer.send(
            topic, value, key, headers=headers, partition=partition, queue_wait_s=QUEUE_WAIT_S
        )
    except Exception as exc:  # ProduceError, a producer that is gone
        metrics.PRODUCE_ERRORS.labels(label).inc()
        log.warning("produce to %s failed: %s", topic, exc or type(exc).__name__)
        raise _refusal(exc) from None
    metrics.PRODUCE_SECONDS.labels(label).observe(time.perf_counter() - started)
    return msg
