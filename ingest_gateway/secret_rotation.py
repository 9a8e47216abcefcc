"""``POST /api/subscriptions/{id}/rotate-secret/``: a new signing secret, and a grace period
(WM_SECRET_ROTATION_GRACE, default 24 h) during which deliveries carry the signatures of both
the new and the previous secret in ``webhook-signature`` (``X-Hub-Signature-256`` uses the new
one), so a receiver verifies whichever secret it holds until it is redeployed.

The previous secret is kept like the current one: encrypted on the subscriptions topic
(``previous_secret_key_encrypted``), sealed in memory. A second rotation within the grace
period replaces it (only the secret just rotated out stays valid).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from ingest_gateway import validation
from ingest_gateway.errors import validation_error
from ingest_gateway.jsonio import model_response, parse_json
from ingest_gateway.operator_models import SecretRotated
from ingest_gateway.state import gateway
from ingest_gateway.subscriptions_api import write
from schemas import records
from webhookmaster import signing


def _new_secret(body: bytes) -> str:
    """The secret the body names (``{"secret_key": ...}``), or a new ``whsec_`` one."""
    if not body.strip():
        return signing.new_secret()
    try:
        data: Any = parse_json(body)
    except ValueError as exc:
        raise validation_error(str(exc)) from None
    if not isinstance(data, dict):
        raise validation_error("the request body must be a JSON object")
    validation.known_fields(data, ("secret_key",))
    if "secret_key" not in data:
        return signing.new_secret()
    return validation.secret_key(data["secret_key"])


async def rotate_secret(request: web.Request) -> web.Response:
    """Rotate the subscription's secret; 200 with the new secret and when the old one stops
    being signed with."""
    gw = gateway(request)
    sub_id = request.match_info["id"]
    gw.subscription(sub_id)
    secret = _new_secret(await request.read())
    async with gw.write_lock(sub_id):
        current = gw.subscription(sub_id)
        now = datetime.now(UTC)
        expires = records.iso(now + timedelta(seconds=gw.settings.secret_rotation_grace_s))
        previous = current.secret_key or None  # a subscription without a secret: none to keep
        sub = msgspec.structs.replace(
            current,
            secret=secret,
            updated_at=records.iso(now),
            protection=current.protection_with(
                previous_secret=previous,
                previous_secret_expires_at=expires if previous else None,
            ),
        )
        await write(gw, sub)
    return model_response(
        SecretRotated(
            id=sub.id,
            secret_key=secret,
            previous_secret_expires_at=sub.previous_secret_expires_at,
        )
    )
