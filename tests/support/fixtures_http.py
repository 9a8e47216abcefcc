"""Fixtures of real HTTP parts on loopback: a running gateway, and receivers (one, or as many
as a test asks ``make_receiver`` for)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support.gateway import LiveGateway, running_gateway
from tests.support.receiver import Receiver
from webhookmaster.settings import Settings


@pytest.fixture
async def gateway(wm_settings: Settings) -> AsyncIterator[LiveGateway]:
    """A real ingest gateway for the test's settings on a free loopback port, ready (table
    loaded, Kafka answering), with a client session (tests/support/gateway.py)."""
    async with running_gateway(wm_settings) as live:
        yield live


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    """A factory of real HTTP receivers, each on its own free loopback port; all stopped at
    the test's end."""
    started: list[Receiver] = []

    async def make() -> Receiver:
        started.append(await Receiver().start())
        return started[-1]

    yield make
    for rx in started:
        await rx.stop()


@pytest.fixture
async def receiver(make_receiver: Callable[[], Awaitable[Receiver]]) -> Receiver:
    """A real HTTP receiver on a free loopback port (tests/support/receiver.py)."""
    return await make_receiver()
