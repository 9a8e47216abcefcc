"""The gateway's HTTP server: aiohttp's, with a request read deadline and JSON protocol errors.

aiohttp bounds neither how long a client may take to send its request line and headers nor how
long it may trickle a body, so a few hundred slow connections could be held open for ever. Here
each request must arrive whole (headers and body) within ``read_timeout`` of its first byte (of
the connection's opening, for the first request): otherwise the connection is answered 408
(JSON) where a response is still possible and closed. A request whose body is late fails its
body read with :class:`RequestReadTimeout`, which the error middleware answers 408. Errors that
aiohttp's parser raises (header line too long, too many headers, malformed request) get the
API's JSON error shape instead of aiohttp's ``text/plain``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

# Idle keep-alive connections are closed after this long (aiohttp's default is an hour).
KEEPALIVE_TIMEOUT_S = 75.0
TOO_LARGE = 431


class RequestReadTimeout(TimeoutError):
    """The request body did not arrive within the read timeout."""


def _error_bytes(status: int, reason: str, error: str, detail: str) -> bytes:
    body = orjson.dumps({"error": error, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _json_error(status: int, error: str, detail: str) -> web.Response:
    resp = web.Response(
        body=orjson.dumps({"error": error, "detail": detail}),
        status=status,
        content_type="application/json",
    )
    resp.force_close()
    return resp


class HardenedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a per-request read deadline and JSON errors."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout
        self._read_timer: asyncio.TimerHandle | None = None
        self._pending_body: StreamReader | None = None  # body of a request still arriving
        self._received = False  # any byte of the current request seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:  # (aiohttp itself feeds b"" to parse pipelined requests it buffered)
            if self._read_timer is None and self._pending_body is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection
            self._received = True
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:  # headers complete: now the body
            self._pending_body = self._messages[-1][1] if self._messages else None
            if self._pending_body is None:
                self._disarm()
        if self._pending_body is not None and self._pending_body.is_eof():
            self._pending_body = None  # the whole request arrived in time
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._received = False
        self._read_timer = self._loop.call_later(self._read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        body, self._pending_body = self._pending_body, None
        if body is not None and not body.is_eof():
            # The handler answers 408 from its failed body read; the connection then closes.
            body.set_exception(
                RequestReadTimeout(
                    f"the request body did not arrive within {self._read_timeout:g} s"
                )
            )
            self._read_timer = self._loop.call_later(self._read_timeout, self.force_close)
            return
        if self.transport is not None and self._received and not self._request_in_progress:
            self.transport.write(
                _error_bytes(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    f"the request headers did not arrive within {self._read_timeout:g} s",
                )
            )
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's own error answers (parser errors, a handler that escaped the
        middlewares) in the API's JSON shape. A client's malformed request is logged at debug
        level only (aiohttp logs each with a traceback at error level)."""
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
        else:
            self.log_debug("bad request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response is already being sent")
        if isinstance(exc, LineTooLong) or (
            status == 400 and "Too many headers" in str(message or "")
        ):
            return _json_error(
                TOO_LARGE,
                "header_fields_too_large",
                f"the request line or a header is too long, or there are too "
                f"many headers: {message or exc}",
            )
        if status == 500:
            return _json_error(500, "internal_error", "internal server error")
        if status == 504:
            return _json_error(504, "timeout", "the request took too long")
        return _json_error(status, "bad_request", str(message or exc or "bad request"))


class HardenedServer(web.Server):
    """An aiohttp server whose connections are :class:`HardenedRequestHandler`."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def __call__(self) -> RequestHandler:
        return HardenedRequestHandler(
            self, loop=self._loop, read_timeout=self.read_timeout, **self._kwargs
        )


class HardenedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`HardenedServer`."""

    def __init__(self, app: web.Application, *, read_timeout: float, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        super().__init__(app, **kwargs)
        self._read_timeout = read_timeout

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app, as aiohttp's runner does
        return HardenedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            read_timeout=self._read_timeout,
            **plain._kwargs,
        )
