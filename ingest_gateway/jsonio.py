"""JSON in and out of HTTP messages, with orjson (and msgspec for the API's body models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"
_ENCODER = msgspec.json.Encoder()


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A response whose body is ``data`` serialised with orjson."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type=JSON_CONTENT_TYPE
    )


def model_response(body: msgspec.Struct, status: int = 200) -> web.Response:
    """A response whose body is ``body``, one of :mod:`ingest_gateway.api_models`, as JSON."""
    return web.Response(body=_ENCODER.encode(body), status=status, content_type=JSON_CONTENT_TYPE)


def parse_json(body: bytes) -> Any:
    """Decode a request body; raises :class:`ValueError` when it is not JSON."""
    if not body:
        raise ValueError("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the request body is not JSON: {exc}") from None
