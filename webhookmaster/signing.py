"""The signing scheme, in one place.

* Outbound deliveries carry Standard Webhooks headers: ``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``. The key is the
  base64-decoded part of a ``whsec_`` secret; any other secret string is used as its UTF-8 bytes.
  While a rotated-out secret is still valid the header holds one signature per secret,
  space-separated, the current one first (:func:`standard_signatures`).
* Outbound deliveries and inbound ingest also use the GitHub style
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``, keyed with the secret string's
  UTF-8 bytes exactly as GitHub-style code does (``hmac.new(secret.encode(), body, sha256)``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@functools.lru_cache(maxsize=4096)
def key_bytes(secret: str) -> bytes:
    """HMAC key of a secret for Standard Webhooks signing."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass  # not valid base64: treat the whole string as an opaque secret
    return secret.encode()


def standard_signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` header value for one key."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode()


def standard_signatures(
    secrets_: tuple[str, ...], webhook_id: str, timestamp: int, body: bytes
) -> str:
    """``webhook-signature`` header value for several secrets (current first, then a
    rotated-out one): ``v1,<sig> v1,<sig>``, as Standard Webhooks allows."""
    return " ".join(
        standard_signature(key_bytes(secret), webhook_id, timestamp, body) for secret in secrets_
    )


def hub_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` header value."""
    return "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()


def hub_signature_valid(secret: str, body: bytes, header: str) -> bool:
    """Constant-time check of an ``X-Hub-Signature-256`` header over the exact body bytes."""
    return hmac.compare_digest(hub_signature(secret, body).encode(), header.strip().encode())


TOLERANCE_S = 300  # how far webhook-timestamp may be from now (Standard Webhooks' default)


def standard_signature_valid(
    secret: str, webhook_id: str, timestamp: str, body: bytes, header: str
) -> bool:
    """Whether a ``webhook-signature`` header holds a ``v1`` signature of ``secret`` over the
    exact body (constant-time), with ``webhook-timestamp`` within :data:`TOLERANCE_S` of now."""
    try:
        moment = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - moment) > TOLERANCE_S:
        return False
    expected = standard_signature(key_bytes(secret), webhook_id, moment, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in header.split()
        if candidate.startswith("v1,")
    )
