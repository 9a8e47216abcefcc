"""How a component process learns to stop: SIGTERM/SIGINT, or an event (in-process tests)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], use_uvloop: bool = True) -> T:
    """Run a component's main coroutine, on uvloop when asked and installed."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def on_stop(stop: asyncio.Event | None, callback: Callable[[], None]) -> asyncio.Task[None] | None:
    """Call ``callback`` on SIGTERM/SIGINT, or once ``stop`` is set when one is given. Returns
    the task that waits for ``stop`` (cancel it on exit), if any."""
    loop = asyncio.get_running_loop()
    if stop is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, callback)
        return None

    async def relay() -> None:
        await stop.wait()
        callback()

    return loop.create_task(relay())
