"""A real HTTP receiver on 127.0.0.1 for delivery tests: records every request and answers with
a per-path script of responses."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # answer late (timeouts)
    hold: asyncio.Event | None = None  # answer only once this is set


class Receiver:
    """Records every request (``hits``) and answers each path from its script."""

    METHOD = "*"  # the HTTP methods it serves

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.scripts: dict[str, list[Reply]] = defaultdict(list)
        self.default: dict[str, Reply] = {}
        self._changed = asyncio.Condition()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply, then: Reply | None = None) -> None:
        """Answer ``path`` with ``replies`` in order, then with ``then`` (default 200)."""
        self.scripts[path] = list(replies)
        if then is not None:
            self.default[path] = then

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def ids(self, path: str) -> Counter[str]:
        """How many requests to ``path`` each webhook id (its ``webhook-id`` header) made."""
        return Counter(h.headers["webhook-id"] for h in self.on(path))

    async def wait_for(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``check()`` holds (re-checked at every request), at most ``timeout``."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(check), timeout)
            except TimeoutError:
                return check()
        return True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(Hit(request.path, dict(request.headers), body, time.time()))
        async with self._changed:
            self._changed.notify_all()
        script = self.scripts.get(request.path)
        reply = script.pop(0) if script else self.default.get(request.path, Reply())
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def start(self) -> Self:
        self._runner, self.port = await serve(self._handle, self.METHOD)
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], method: str
) -> tuple[web.AppRunner, int]:
    """Serve ``handler`` for every path (``method``: "*" or one method) on a free loopback
    port; returns the runner (clean it up to stop) and the port."""
    app = web.Application()
    app.router.add_route(method, "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
