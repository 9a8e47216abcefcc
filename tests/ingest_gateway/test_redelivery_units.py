"""The redelivery record a stored webhook gives (broker-free), and the dead-letter filter's SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ingest_gateway.deadletters import Filter
from ingest_gateway.errors import ApiError
from ingest_gateway.redelivery import CHAIN_SPAN, Stored, new_chain
from schemas import records
from status_projector import ordering

STORED = Stored(
    id="w-1",
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    subscription_id="00000000-0000-4000-8000-000000000001",
    event_type="order.created",
    body=b'{"b": 1,  "a": 2}',
    metadata=b'{"source": "api"}',
    attempt_count=6,
    chain=1,
    status="FAILED",
)


def test_the_gateway_and_the_projector_agree_on_the_chain_span() -> None:
    assert CHAIN_SPAN == ordering.CHAIN_SPAN


def test_a_new_chain_continues_the_attempts_with_the_same_id_and_bytes() -> None:
    webhook = new_chain(STORED)
    assert (webhook.webhook_id, webhook.body, webhook.metadata) == (
        "w-1",
        STORED.body,
        STORED.metadata,
    )
    assert (webhook.attempt, webhook.chain, webhook.chain_start) == (6, 2, 6)
    assert webhook.received_at == "2026-01-02T03:04:05.000000Z"
    headers = dict(webhook.headers())
    assert headers[records.H_CHAIN] == b"2" and headers[records.H_CHAIN_START] == b"6"
    assert not any("idempot" in name.lower() for name in headers)


@pytest.mark.parametrize(
    "stored",
    [
        Stored(**{**STORED.__dict__, "body": None}),
        Stored(**{**STORED.__dict__, "subscription_id": None}),
        Stored(**{**STORED.__dict__, "attempt_count": records.MAX_ATTEMPT - 1}),
        Stored(**{**STORED.__dict__, "chain": records.MAX_CHAIN}),
    ],
)
def test_what_cannot_go_again_is_409(stored: Stored) -> None:
    with pytest.raises(ApiError) as caught:
        new_chain(stored)
    assert caught.value.status == 409 and caught.value.error == "not_redeliverable"


def test_metadata_that_is_not_an_object_is_sent_empty() -> None:
    assert new_chain(Stored(**{**STORED.__dict__, "metadata": b"[1]"})).metadata == b"{}"


def test_the_dead_letter_filter_numbers_its_parameters() -> None:
    args: list[object] = ["first"]
    sub = uuid.uuid4()
    where = Filter(subscription_id=sub, reason="gave up", ids=[3]).where(args)
    assert where == (
        "true AND d.subscription_id = $2 AND strpos(d.reason, $3) > 0 AND d.id = ANY($4::bigint[])"
    )
    assert args == ["first", sub, "gave up", [3]]
