"""What an attempt leaves behind, as records: the attempt event, and the retry or dead-letter
record when it failed. The agent commits a record's offset only after these are acknowledged."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Message

from delivery_agents.http_delivery import AttemptResult
from schemas import records
from schemas.records import Outcome, Webhook
from schemas.topics import ATTEMPTS, DEAD_LETTER, name
from webhookmaster.kafka_clients import AsyncProducer, record_headers
from webhookmaster.retry_ladder import DUE_HEADER, MAX_ATTEMPTS, Tier, next_tier
from webhookmaster.subscription_table import Subscription

# A dead letter keeps at most this much of an unreadable record's value as text.
RAW_LIMIT = 1_048_576


def attempt_event(
    record: Webhook,
    sub: Subscription,
    attempt: int,
    started: datetime,
    result: AttemptResult,
    outcome: Outcome,
    next_at: datetime | None,
) -> dict[str, Any]:
    """The attempt event as the JSON object that goes on the attempts topic (the fields of
    :class:`schemas.records.AttemptEvent`)."""
    event: dict[str, Any] = {
        "webhook_id": record.webhook_id,
        "attempt_id": uuid.uuid4().hex,
        "subscription_id": sub.id,
        "event_type": record.event_type,
        "target_url": sub.target_url,
        "attempt_number": attempt,
        "started_at": records.iso(started),
        "duration_ms": result.duration_ms,
        "status_code": result.status_code,
        "error": result.error,
        "response_excerpt": result.excerpt,
        "outcome": outcome,
        "next_attempt_at": records.iso(next_at) if next_at else None,
        "received_at": record.received_at,
    }
    if record.chain:  # a resent webhook's chain (absent: the first delivery)
        event["chain"] = record.chain
    return event


def dead_letter(
    reason: str, record: Webhook | None, source: Message, raw: bytes | None = None
) -> dict[str, Any]:
    """A dead letter (the JSON object of :class:`schemas.records.DeadLetter`) for ``record``, or
    for an unreadable ``source`` whose value is ``raw`` (kept as text, cut at
    :data:`RAW_LIMIT`, with the record's headers)."""
    where: dict[str, Any] = {
        "topic": source.topic(),
        "partition": source.partition(),
        "offset": source.offset(),
    }
    if record is None:
        where["headers"] = {
            name: (value or b"").decode("utf-8", errors="replace")
            for name, value in record_headers(source)
        }
    return {
        "reason": reason,
        "failed_at": records.now_iso(),
        "webhook_id": record.webhook_id if record else None,
        "subscription_id": record.subscription_id if record else None,
        "record": record.to_json() if record else None,
        "raw": raw[:RAW_LIMIT].decode("utf-8", errors="replace") if raw else None,
        "source": where,
    }


class Publisher:
    """Produces outcomes to the attempts, retry and dead-letter topics."""

    def __init__(self, producer: AsyncProducer, prefix: str, ladder: list[Tier]) -> None:
        self.producer = producer
        self.attempts_topic = name(prefix, ATTEMPTS)
        self.dead_letter_topic = name(prefix, DEAD_LETTER)
        self.ladder = ladder

    async def dead_letter(self, letter: dict[str, Any], key: bytes | None) -> None:
        await self.producer.send(self.dead_letter_topic, records.dumps(letter), key)

    async def outcome(
        self,
        record: Webhook,
        sub: Subscription,
        started: datetime,
        result: AttemptResult,
        source: Message,
    ) -> Outcome:
        """Publish what attempt ``record.attempt + 1`` came to; returns its outcome. The retry
        ladder counts the attempts of the record's delivery chain (a resend starts a new one)."""
        return (await self.outcome_at(record, sub, started, result, source))[0]

    async def outcome_at(
        self,
        record: Webhook,
        sub: Subscription,
        started: datetime,
        result: AttemptResult,
        source: Message,
        to_tier: bool = True,
    ) -> tuple[Outcome, datetime | None]:
        """As :meth:`outcome`, with when the next attempt is due; ``to_tier=False`` leaves a
        retry out of the retry topics (a FIFO head waits in its agent)."""
        attempt = record.attempt + 1
        in_chain = record.chain_attempt + 1
        sends: list[Any] = []
        next_at = None
        if result.delivered:
            outcome: Outcome = "delivered"
        else:
            tier = (
                next_tier(self.ladder, in_chain, result.retry_after_s) if result.retryable else None
            )
            if tier is None:
                outcome = "failed"
                why = (
                    f"gave up after {in_chain} attempt(s) of {MAX_ATTEMPTS}"
                    if result.retryable
                    else "not retried"
                )
                letter = dead_letter(
                    f"{why}: {result.error}", record.replace(attempt=attempt), source
                )
                sends.append(self.dead_letter(letter, sub.id.encode()))
            else:
                outcome = "retrying"
                next_at = datetime.now(UTC) + timedelta(seconds=tier.delay_s)
                retry = record.replace(attempt=attempt, due_at=records.iso(next_at))
                due_ms = str(int(next_at.timestamp() * 1000)).encode()
                if to_tier:
                    sends.append(
                        self.producer.send(
                            tier.topic,
                            retry.body,
                            sub.id.encode(),
                            headers=[*retry.headers(), (DUE_HEADER, due_ms)],
                        )
                    )
        event = attempt_event(record, sub, attempt, started, result, outcome, next_at)
        sends.append(
            self.producer.send(
                self.attempts_topic, records.dumps(event), record.webhook_id.encode()
            )
        )
        if len(sends) == 1:
            await sends[0]
        else:
            await asyncio.gather(*sends)
        return outcome, next_at


def seconds_since(iso_time: str) -> float:
    return time.time() - records.parse_time(iso_time).timestamp()
