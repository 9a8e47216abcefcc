"""Error responses: one JSON shape for every error, and the middleware that enforces it.

Every error body is ``{"error": <code>, "detail": <text>}``, plus ``"field"`` when one input field
is at fault and sometimes more keys (``"allowed"``). No stack trace ever reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ingest_gateway.http_server import RequestReadTimeout
from ingest_gateway.jsonio import json_response

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"

# Error codes for aiohttp's own HTTP exceptions (unknown route, wrong method, body too large).
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}
# Headers of an aiohttp exception that describe its (replaced) text body.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


class ApiError(Exception):
    """An error answer: HTTP status, error code, human detail, optional field and headers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body

    def response(self) -> web.Response:
        return json_response(self.body(), self.status, self.headers)


def validation_error(detail: str, field: str | None = None, **extra: Any) -> ApiError:
    return ApiError(400, "validation_error", detail, field=field, **extra)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "not_found", detail)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the request body exceeds {limit} bytes")


def unavailable(detail: str, error: str = "kafka_unavailable") -> ApiError:
    """503 with ``Retry-After``: the request was not done and may be retried."""
    return ApiError(503, error, detail, headers={"Retry-After": RETRY_AFTER_S})


def _http_exception_response(exc: web.HTTPException) -> web.Response:
    text = exc.text or ""
    detail = exc.reason if not text or text.startswith(f"{exc.status}:") else text
    code = _CODES.get(exc.status) or exc.reason.lower().replace(" ", "_").replace("-", "_")
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    return json_response({"error": code, "detail": detail}, exc.status, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`ApiError`, aiohttp's HTTP errors and unexpected exceptions into JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_exception_response(exc)
    except RequestReadTimeout as exc:  # the body did not arrive in time: answer, then close
        resp = json_response({"error": "request_timeout", "detail": str(exc)}, 408)
        resp.force_close()
        return resp
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": "internal_error", "detail": "internal server error"}, 500)
