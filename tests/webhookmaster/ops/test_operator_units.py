"""The listen command's report and the replay command's progress bar, without a broker."""

from __future__ import annotations

import argparse

import pytest

from delivery_agents.http_delivery import headers_for
from ingest_gateway.errors import ApiError
from ingest_gateway.replay import replay_record
from schemas.records import MAX_ATTEMPT, Webhook
from status_projector.changes import event_id_of
from webhookmaster import signing
from webhookmaster.ops import listen
from webhookmaster.ops.replay_command import bar

BODY = b'{"order":42,"items":["a"]}'


def test_listen_describes_a_delivery_and_its_signatures() -> None:
    secret = signing.new_secret()
    headers = headers_for("wh_1", "order.created", secret, BODY, attempt=3)
    text = listen.describe("POST", "/hook", headers, BODY, secret)
    assert "id:         wh_1" in text and "event type: order.created" in text
    assert "attempt:    3" in text
    assert "signatures: webhook-signature valid, X-Hub-Signature-256 valid" in text
    assert '    "order": 42,' in text
    wrong = listen.describe("POST", "/hook", headers, BODY, signing.new_secret())
    assert "webhook-signature INVALID, X-Hub-Signature-256 INVALID" in wrong
    tampered = listen.describe("POST", "/hook", headers, BODY + b" ", secret)
    assert "webhook-signature INVALID" in tampered
    assert "not checked" in listen.describe("POST", "/", headers, BODY, None)
    assert "MISSING" in listen.describe("POST", "/", {}, b"plain text", secret)
    assert listen.pretty_body(b"not json") == "not json"


@pytest.mark.parametrize("text", ["99", "600", "ok", ""])
def test_listen_refuses_a_status_that_is_not_one(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        listen.http_status(text)
    assert listen.http_status("503") == 503


def test_replay_bar_shows_progress() -> None:
    assert bar({"total": 10, "scanned": 5, "count": 2, "state": "running"}).startswith(
        "[" + "#" * 15 + "." * 15 + "]  50%  5/10 records read, 2 re-delivered"
    )
    assert "100%" in bar({"total": 0, "scanned": 0, "count": 0, "state": "done"})


def test_a_replayed_record_starts_a_new_chain() -> None:
    hook = Webhook(
        webhook_id="wh_1",
        subscription_id="00000000-0000-4000-8000-000000000001",
        event_type="e",
        body=BODY,
        received_at="2026-01-01T00:00:00.000000Z",
        metadata=b'{"source": "gateway"}',
    )
    again = replay_record(hook, "job-1", attempts=6, chain=0)
    assert (again.webhook_id, again.body, again.received_at) == ("wh_1", BODY, hook.received_at)
    assert (again.chain, again.chain_start, again.attempt, again.chain_attempt) == (1, 6, 6, 0)
    assert b'"replay_job":"job-1"' in again.metadata and b'"source":"gateway"' in again.metadata
    assert not any(name.startswith("wm-idempotency") for name, _ in again.headers())
    with pytest.raises(ApiError):  # attempt numbers used up
        replay_record(hook, "job-1", attempts=MAX_ATTEMPT, chain=0)


def test_the_event_id_of_a_record_comes_from_its_metadata() -> None:
    def of(metadata: bytes) -> str | None:
        return event_id_of(
            Webhook("w", None, "e", b"{}", "2026-01-01T00:00:00Z", metadata=metadata)
        )

    assert of(b'{"event_id": "evt-1"}') == "evt-1"
    assert of(b"{}") is None and of(b'{"event_id": 5}') is None
