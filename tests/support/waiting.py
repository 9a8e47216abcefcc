"""The one bounded wait for state with no event to await (rows another process writes, topic
configs the broker propagates, a process becoming ready)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str | Callable[[], object] | None = None,
) -> Any:
    """Call ``check()`` (plain or async) until its value is truthy or ``timeout`` seconds pass,
    sleeping ``interval`` between calls, and return its last value (so ``assert await
    eventually(...)`` fails on a timeout). With ``what`` (a text, or a callable giving one when
    the time is up), a timeout raises AssertionError naming it and the last value instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                said = what() if callable(what) else what
                raise AssertionError(f"timed out after {timeout}s waiting for {said}: {value!r}")
            return value
        await asyncio.sleep(interval)
