"""Keyset pagination for the HTTP API: the ``limit`` parameter and the opaque cursor.

A cursor is the position of the last item of a page in the list's order, a pair of strings
such as ``(created_at, id)``, as unpadded URL-safe base64 of a JSON array. The subscription
list and the status API's lists both use this codec.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import orjson

from ingest_gateway.errors import validation_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
BAD_CURSOR = "cursor is not valid"


def limit(query: Mapping[str, str], default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """The ``limit`` query parameter: an integer in 1..maximum, else 400."""
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise validation_error(f"limit must be an integer from 1 to {maximum}", "limit")
    return value


def encode_cursor(position: tuple[str, str]) -> str:
    """An opaque cursor for ``position``."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(raw: str | None, detail: str = BAD_CURSOR) -> tuple[str, str] | None:
    """The position a cursor stands for (none for an absent or empty cursor); 400 with
    ``detail`` when it is not one of ours."""
    if not raw:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if not isinstance(data, list) or len(data) != 2 or not all(isinstance(x, str) for x in data):
        raise validation_error(detail, "cursor")
    return data[0], data[1]
