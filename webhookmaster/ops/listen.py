"""``webhookmaster listen``: a local receiver for trying deliveries out. It serves every path
on 127.0.0.1, answers each request with the chosen status, and prints each delivery -- its id,
event type, attempt, the headers that matter, the body pretty-printed -- and whether its
signatures verify against ``--secret``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from webhookmaster import signing

if TYPE_CHECKING:  # aiohttp is imported when the receiver starts: the CLI starts faster
    from aiohttp import web

HOST = "127.0.0.1"
SHOWN_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Hub-Signature-256",
    "X-Webhook-Event-Type",
    "X-Webhook-Attempt",
    "Content-Type",
    "User-Agent",
    "traceparent",
)


def http_status(text: str) -> int:
    """An ``--status`` value: an HTTP status code from 200 to 599."""
    try:
        status = int(text)
    except ValueError:
        status = 0
    if not 200 <= status <= 599:
        raise argparse.ArgumentTypeError(f"not an HTTP status from 200 to 599: {text!r}")
    return status


def pretty_body(body: bytes) -> str:
    """The body as indented JSON, or as text when it is not JSON."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def verdict(secret: str | None, headers: dict[str, str], body: bytes) -> str:
    """What the signatures say: each checked signature valid or not, or why none was."""
    if not secret:
        return "not checked (start with --secret whsec_... to verify)"
    parts = []
    standard = headers.get("webhook-signature")
    if standard is not None:
        ok = signing.standard_signature_valid(
            secret,
            headers.get("webhook-id", ""),
            headers.get("webhook-timestamp", ""),
            body,
            standard,
        )
        parts.append(f"webhook-signature {'valid' if ok else 'INVALID'}")
    hub = headers.get("X-Hub-Signature-256")
    if hub is not None:
        ok = signing.hub_signature_valid(secret, body, hub)
        parts.append(f"X-Hub-Signature-256 {'valid' if ok else 'INVALID'}")
    return ", ".join(parts) if parts else "MISSING (the request is not signed)"


def describe(
    method: str, path: str, headers: dict[str, str], body: bytes, secret: str | None
) -> str:
    """The printed form of one delivery (``headers`` under the names of
    :data:`SHOWN_HEADERS`)."""
    lines = [
        f"--- {datetime.now(UTC).isoformat(timespec='seconds')} {method} {path}",
        f"id:         {headers.get('webhook-id', '-')}",
        f"event type: {headers.get('X-Webhook-Event-Type', '-')}",
        f"attempt:    {headers.get('X-Webhook-Attempt', '-')}",
        f"signatures: {verdict(secret, headers, body)}",
        "headers:",
        *(f"  {name}: {headers[name]}" for name in SHOWN_HEADERS if name in headers),
        "body:",
        *("  " + line for line in pretty_body(body).splitlines()),
    ]
    return "\n".join(lines)


def app(status: int, secret: str | None, out: TextIO) -> web.Application:
    """The receiver: every method and path, answered with ``status``."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        # the headers that matter, under these names (aiohttp's look-up ignores case)
        shown = {name: request.headers[name] for name in SHOWN_HEADERS if name in request.headers}
        print(describe(request.method, request.path_qs, shown, body, secret), file=out, flush=True)
        return web.json_response({"received": True}, status=status)

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_route("*", "/{tail:.*}", receive)
    return application


async def serve(
    port: int,
    status: int,
    secret: str | None,
    out: TextIO = sys.stdout,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM."""
    from aiohttp import web

    runner = web.AppRunner(app(status, secret, out), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(
            f"listening on http://{HOST}:{bound}/ (answers {status}; Ctrl-C stops); "
            f"signatures {'checked' if secret else 'not checked'}",
            file=out,
            flush=True,
        )
        if started is not None:
            started(bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
