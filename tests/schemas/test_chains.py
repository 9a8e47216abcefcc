"""Delivery chains in the record formats (resend, recover, redrive): the ``wm-chain`` and
``wm-chain-start`` headers, their JSON forms, and the order keys the projector gives them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import records
from schemas.records import RecordError, Webhook
from status_projector.changes import KafkaRecord, decode
from status_projector.ordering import CHAIN_SPAN, DELIVERED, FAILED, PENDING, chain_of, progress

RESENT = Webhook(
    webhook_id="w-1",
    subscription_id="00000000-0000-4000-8000-000000000001",
    event_type="order.created",
    body=b'{"a":  1}',
    received_at="2026-01-02T03:04:05.000000Z",
    attempt=6,
    chain=2,
    chain_start=6,
)


def parse(headers: list[tuple[str, bytes]]) -> Webhook:
    return records.parse_webhook(RESENT.body, headers, "fallback", "2026-01-01T00:00:00Z")


def test_chain_headers_round_trip_and_count_the_ladder_from_the_chain_start() -> None:
    again = parse(RESENT.headers())
    assert again == RESENT and again.chain_attempt == 0
    assert again.replace(attempt=8).chain_attempt == 2


def test_a_first_delivery_has_no_chain_headers() -> None:
    first = RESENT.replace(chain=0, chain_start=0, attempt=0)
    names = [name for name, _ in first.headers()]
    assert records.H_CHAIN not in names and records.H_CHAIN_START not in names
    assert parse(first.headers()).chain == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (records.H_CHAIN, b"x"),
        (records.H_CHAIN, b"-1"),
        (records.H_CHAIN, str(records.MAX_CHAIN + 1).encode()),
        (records.H_CHAIN_START, b"7"),  # more than the attempts made
    ],
)
def test_bad_chain_headers_are_refused(name: str, value: bytes) -> None:
    headers = [(n, v) for n, v in RESENT.headers() if n != name] + [(name, value)]
    with pytest.raises(RecordError):
        parse(headers)


def test_the_dead_letter_form_keeps_the_chain() -> None:
    data = RESENT.to_json()
    assert (data["chain"], data["chain_start"]) == (2, 6)
    back = records.webhook_from_json(data, "x", "2026-01-01T00:00:00Z")
    assert (back.chain, back.chain_start, back.attempt) == (2, 6, 6)


def test_every_key_of_a_chain_ranks_above_every_key_of_the_one_before() -> None:
    highest_of_chain_0 = progress(DELIVERED, 10 * records.MAX_ATTEMPT)
    assert highest_of_chain_0 < progress(PENDING, 0, 1) == CHAIN_SPAN
    assert chain_of(progress(FAILED, 1000, 3)) == 3
    assert progress(PENDING, 0, records.MAX_CHAIN + 1) < 2**31  # PostgreSQL integer


def test_the_projector_reads_a_resend_as_pending_in_its_chain() -> None:
    rec = KafkaRecord(
        topic="p.ingest",
        partition=0,
        offset=1,
        timestamp_ms=1_767_323_045_000,
        key=b"k",
        value=RESENT.body,
        headers=tuple(RESENT.headers()),
    )
    batch = decode([rec], "p.", datetime(2000, 1, 1, tzinfo=UTC))
    (change,) = batch.webhooks
    assert (change.status, change.progress, change.attempt_count) == (PENDING, 2 * CHAIN_SPAN, 6)
    assert change.body == RESENT.body
