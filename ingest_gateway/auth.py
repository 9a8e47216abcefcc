"""API keys (``Authorization: Bearer <key>``) and ingest authentication.

With ``WM_API_KEYS`` set, every ``/api/`` route needs a key except the public ones
(:data:`PUBLIC_ROUTES`: the OpenAPI document, and ingest, which checks its own credentials:
a valid subscription signature or an API key).
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ingest_gateway.errors import ApiError
from webhookmaster import signing
from webhookmaster.subscription_table import Subscription

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Route names that the API-key middleware lets through (Swagger UI's page and assets are also
# outside /api/: named here so they stay public wherever they move).
PUBLIC_ROUTES = frozenset({"openapi", "swagger", "swagger_asset", "ingest"})
# Stands in for an unknown subscription so that ingest authenticates before it tells anyone
# whether the id exists: a secret nobody knows, like every subscription the API creates.
_DECOY = Subscription(
    id="",
    target_url="",
    secret=secrets.token_urlsafe(32),
    event_types=(),
    is_active=True,
    created_at="",
    updated_at="",
)


def parse_keys(raw: str) -> tuple[bytes, ...]:
    """The configured keys: comma-separated, blanks ignored."""
    return tuple(k.strip().encode() for k in raw.split(",") if k.strip())


def bearer_valid(keys: tuple[bytes, ...], header: str | None) -> bool:
    """True when ``header`` is ``Bearer <k>`` for one of ``keys`` (constant-time per key)."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    candidate = token.strip().encode()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(candidate, key)
    return ok


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def api_key_middleware(keys: tuple[bytes, ...]) -> Middleware:
    """Middleware that requires an API key on every non-public ``/api/`` route."""

    @web.middleware
    async def require_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.match_info.route.name not in PUBLIC_ROUTES
            and request.path.startswith("/api/")
            and not bearer_valid(keys, request.headers.get("Authorization"))
        ):
            raise unauthorized("a valid API key is required: 'Authorization: Bearer <key>'")
        return await handler(request)

    return require_api_key


def authenticate_ingest(
    request: web.Request, sub: Subscription, body: bytes, keys: tuple[bytes, ...]
) -> None:
    """Accept an ingest request with a valid signature (when the subscription has a secret) or
    a valid API key (when keys are configured); raise 400/401 otherwise.

    A subscription with a secret and no credential at all: 400 (signature required). Without
    keys configured and without a secret, ingest is open.
    """
    if keys and request.headers.get("Authorization") is not None:
        if bearer_valid(keys, request.headers.get("Authorization")):
            return
        if not sub.secret_key or SIGNATURE_HEADER not in request.headers:
            raise unauthorized("invalid API key")
    if sub.secret_key:
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None:
            raise ApiError(
                400,
                "signature_required",
                f"{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body> is required"
                + (" (or an API key)" if keys else ""),
                field=SIGNATURE_HEADER,
            )
        if not signing.hub_signature_valid(sub.secret_key, body, header):
            raise ApiError(
                401,
                "invalid_signature",
                f"{SIGNATURE_HEADER} does not match the request body",
                field=SIGNATURE_HEADER,
            )
        return
    if keys:
        raise unauthorized("this subscription has no secret: an API key is required")


def authenticate_unknown_ingest(request: web.Request, body: bytes, keys: tuple[bytes, ...]) -> None:
    """For an ingest to an id that is not a subscription: with API keys configured, answer
    exactly what a subscription with a secret would answer to the same credentials (401 for a
    wrong key or signature, 400 when there is none), and return only for a valid API key (the
    caller then answers 404). Without keys the API is open and this returns at once."""
    if keys:
        authenticate_ingest(request, _DECOY, body, keys)
