"""Input validation for the HTTP API: subscription bodies and event types."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ingest_gateway.errors import validation_error
from schemas import records

MAX_URL_LENGTH = 2048
MAX_EVENT_TYPE_LENGTH = records.MAX_EVENT_TYPE_LENGTH


def _non_canonical_ipv4(host: str) -> bool:
    """True for an IPv4 address written other than as a dotted quad (``2130706433``,
    ``127.1``, ``0177.0.0.1``, ``0x7f.0.0.1``, ``0``): resolvers read these as addresses."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return True
    return False


def target_url(value: Any) -> str:
    """An absolute http(s) URI with a host: ASCII only (an IRI must be percent-encoded and
    its host punycoded), an IPv4 host only as a canonical dotted quad."""
    if not isinstance(value, str) or not value:
        raise validation_error("target_url must be a non-empty string", "target_url")
    if len(value) > MAX_URL_LENGTH or not all("!" <= c <= "~" for c in value):
        raise validation_error(
            f"target_url must be at most {MAX_URL_LENGTH} printable ASCII characters without "
            "spaces (percent-encode other characters, punycode the host)",
            "target_url",
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise validation_error(f"target_url is not a valid URL: {exc}", "target_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise validation_error(
            "target_url must be an absolute http(s) URL with a host", "target_url"
        )
    if _non_canonical_ipv4(parts.hostname):
        raise validation_error(
            "target_url's IPv4 host must be a dotted quad like 192.0.2.1", "target_url"
        )
    return value


def secret_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise validation_error("secret_key must be a non-empty string", "secret_key")
    return value


# What :func:`schemas.records.event_type_problem` accepts, as a regex for the OpenAPI document.
EVENT_TYPE_PATTERN = records.EVENT_TYPE_PATTERN
event_type_problem = records.event_type_problem


def event_type(value: Any, field: str = "event_type") -> str:
    """``value`` when it is a valid event type (:func:`event_type_problem`), else 400."""
    problem = event_type_problem(value)
    if problem is not None:
        raise validation_error(f"{field} {problem}", field)
    return str(value)  # a str: event_type_problem found none


def event_types(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise validation_error("event_types must be a list of non-empty strings", "event_types")
    for item in value:
        event_type(item, "event_types")
    return value


def is_active(value: Any) -> bool:
    if not isinstance(value, bool):
        raise validation_error("is_active must be a boolean", "is_active")
    return value


MAX_RATE_LIMIT = 100_000.0  # deliveries per second


def rate_limit(value: Any) -> float | None:
    """Deliveries per second, > 0 and at most :data:`MAX_RATE_LIMIT`; null: no limit."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_RATE_LIMIT
    ):
        raise validation_error(
            f"rate_limit must be null or a number of deliveries per second in "
            f"(0, {MAX_RATE_LIMIT:g}]",
            "rate_limit",
        )
    return float(value)


def ordering_key(value: str | None) -> str | None:
    """The ``ordering_key`` query parameter: absent, or 1 to 200 characters."""
    if value is not None and not 0 < len(value) <= records.MAX_ORDERING_KEY_LENGTH:
        raise validation_error(
            f"ordering_key must be 1 to {records.MAX_ORDERING_KEY_LENGTH} characters",
            "ordering_key",
        )
    return value


def ordering(value: Any) -> str:
    if value not in ("none", "fifo"):
        raise validation_error('ordering must be "none" or "fifo"', "ordering")
    return str(value)


def on_failure(value: Any) -> str:
    if value not in ("skip", "halt"):
        raise validation_error('on_failure must be "skip" or "halt"', "on_failure")
    return str(value)


SUBSCRIPTION_FIELDS: dict[str, Callable[[Any], Any]] = {
    "target_url": target_url,
    "secret_key": secret_key,
    "event_types": event_types,
    "is_active": is_active,
    "rate_limit": rate_limit,
    "ordering": ordering,
    "on_failure": on_failure,
}


def known_fields(names: Iterable[str], allowed: Iterable[str]) -> None:
    """400 ``validation_error`` naming the first of ``names`` (a body's members) that is not
    in ``allowed``."""
    allowed = tuple(allowed)
    for name in names:
        if name not in allowed:
            raise validation_error(f"unknown field {name!r}; allowed: {', '.join(allowed)}", name)


def subscription_body(body: Any, *, require_target_url: bool) -> dict[str, Any]:
    """The validated writable fields of a subscription body; unknown fields are rejected."""
    if not isinstance(body, dict):
        raise validation_error("the request body must be a JSON object")
    known_fields(body, SUBSCRIPTION_FIELDS)
    if require_target_url and "target_url" not in body:
        raise validation_error("target_url is required", "target_url")
    return {name: SUBSCRIPTION_FIELDS[name](value) for name, value in body.items()}
