"""Secret rotation without a broker: the signatures a delivery carries while a rotated-out
secret is valid (checked with the ``standardwebhooks`` package), and the previous secret kept
encrypted on the record and sealed in memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from delivery_agents.http_delivery import headers_for
from schemas import records
from webhookmaster import secret_box, signing
from webhookmaster.secret_box import SecretBox
from webhookmaster.subscription_table import Protection, Subscription

BODY = b'{"order": 42}'


def sub(previous: str | None = None, expires: str | None = None) -> Subscription:
    return Subscription(
        id="00000000-0000-4000-8000-000000000001",
        target_url="https://example.com/hook",
        secret="whsec_" + "A" * 44,
        event_types=(),
        is_active=True,
        created_at="2026-01-01T00:00:00.000000Z",
        updated_at="2026-01-01T00:00:00.000000Z",
        protection=Protection.of(None, None, None, previous, expires),
    )


def test_both_secrets_verify_while_the_previous_one_is_valid() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    headers = headers_for("wh_1", "order.created", new, BODY, previous=old, attempt=2)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (new, old):
        Webhook(secret).verify(BODY, headers)  # raises when no signature matches
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)
    assert headers["X-Hub-Signature-256"] == signing.hub_signature(new, BODY)
    assert headers["X-Webhook-Attempt"] == "2"
    stamp = headers["webhook-timestamp"]
    assert signing.standard_signature_valid(old, "wh_1", stamp, BODY, headers["webhook-signature"])
    assert not signing.standard_signature_valid(
        old, "wh_1", str(int(time.time()) - 3600), BODY, headers["webhook-signature"]
    )


def test_the_previous_secret_counts_until_it_expires() -> None:
    now = datetime.now(UTC)
    valid = sub("whsec_old", records.iso(now + timedelta(hours=1)))
    assert valid.previous_secret_valid(now) == "whsec_old"
    assert valid.previous_secret_valid(now + timedelta(hours=2)) is None
    assert sub().previous_secret_valid() is None
    assert Protection.of(None, None, None, "whsec_old", None) is None  # no expiry: none kept


def test_the_previous_secret_is_encrypted_on_the_record_and_sealed_in_memory() -> None:
    box = SecretBox([secret_box.new_key()])
    expires = records.iso(datetime.now(UTC) + timedelta(hours=1))
    stored = sub("whsec_old", expires).to_stored(box)
    assert "whsec_old" not in str(stored)
    assert stored["previous_secret_expires_at"] == expires
    records.decoder(records.SubscriptionRecord).decode(records.dumps(stored))  # schema-valid
    loaded, current = Subscription.from_stored(stored, box)
    assert current and loaded.previous_secret_key == "whsec_old"
    compact = loaded.compact()
    assert compact.protection is not None
    assert isinstance(compact.protection.previous_secret, bytes)  # sealed
    assert compact.previous_secret_valid() == "whsec_old"
    assert "previous_secret_key_encrypted" not in sub().to_stored(box)
    view = compact.to_record()
    assert view["previous_secret_expires_at"] == expires and "whsec_old" not in str(view)


def test_auto_disable_keeps_the_previous_secret() -> None:
    expires = records.iso(datetime.now(UTC) + timedelta(hours=1))
    kept = sub("whsec_old", expires).protection_with(disabled_reason="410", disabled_at=expires)
    assert kept is not None and kept.previous_secret == "whsec_old"
    assert kept.disabled_reason == "410"
