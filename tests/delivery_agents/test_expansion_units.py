"""Fan-out expansion is bounded: at most ``EXPANSIONS`` fan-out records expand at once, however
many the agent fetched (each holds one record per matching subscription until acknowledged)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from delivery_agents.agent import EXPANSIONS, Agent


async def test_no_more_than_expansions_fan_out_records_expand_at_once() -> None:
    running = peak = done = 0
    release = asyncio.Event()

    async def expand(record: Any) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        done += 1

    agent = SimpleNamespace(expanding=asyncio.Semaphore(EXPANSIONS), _expand=expand)
    tasks = [asyncio.create_task(Agent._fan_out(agent, object(), None)) for _ in range(50)]  # type: ignore[arg-type]
    for _ in range(20):  # let every task run as far as it can
        await asyncio.sleep(0)
    assert running == EXPANSIONS
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert (done, peak) == (50, EXPANSIONS)
