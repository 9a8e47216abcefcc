"""Broker-free checks of endpoint protection: the auto-disable's concurrency rule (another
writer's record between the agent's read and its write wins), and the circuit breaker's states.
The producer and the table's follower are stand-ins here; test_protection.py runs the real
thing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson
import pytest

from delivery_agents.auto_disable import AutoDisabler
from delivery_agents.breaker import Breaker
from schemas.topics import OPERATOR_EVENTS, SUBSCRIPTIONS
from webhookmaster import secret_box
from webhookmaster import settings as settings_mod
from webhookmaster.secret_box import SecretBox
from webhookmaster.subscription_table import Subscription, SubscriptionTable

SUB_ID = "2f0c8a3e-7b1d-4c5e-9a2f-3d4e5f6a7b8c"
NOW = "2026-01-01T00:00:00Z"
ACTIVE = Subscription(SUB_ID, "https://example.com/h", "whsec_x", (), True, NOW, NOW)
PATCHED = msgspec.structs.replace(ACTIVE, target_url="https://example.com/new", updated_at=NOW)


class Acked:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


class Producer:
    """Acknowledges at increasing offsets; ``during_send`` runs inside the first send to the
    subscriptions topic (what the table's follower reads meanwhile)."""

    def __init__(self, during_send: Any = None) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self.offset = 10
        self.during_send = during_send

    async def send(self, topic: str, value: bytes | None, key: Any = None) -> Acked:
        self.sent.append((topic, value))
        if self.during_send is not None and topic.endswith(SUBSCRIPTIONS):
            self.during_send()
            self.during_send = None
        self.offset += 1
        return Acked(self.offset)


TABLES: list[SubscriptionTable] = []


@pytest.fixture(autouse=True)
def _close_tables() -> Iterator[None]:
    yield
    while TABLES:
        TABLES.pop().close()


def disabler(producer: Producer, after_write: Any = None) -> tuple[AutoDisabler, SubscriptionTable]:
    # a port where nothing listens: the table's consumer is created, never used
    env = {"WM_TOPIC_PREFIX": "u.", "WM_SECRET_KEYS": secret_box.new_key(), "WM_KAFKA_PORT": "9"}
    settings = settings_mod.load(env)
    table = SubscriptionTable(settings, box=SecretBox([settings.secret_keys]))
    TABLES.append(table)
    table.apply(SUB_ID, ACTIVE, 1)
    calls = []

    def catch_up(timeout: float) -> bool:  # the follower: after the own write, ``after_write``
        calls.append(timeout)
        if len(calls) == 2 and after_write is not None:
            after_write(table)
        return True

    table.wait_caught_up = catch_up  # type: ignore[method-assign]
    return AutoDisabler(settings, table, producer), table  # type: ignore[arg-type]


def topics(producer: Producer) -> list[str]:
    return [topic.removeprefix("u.") for topic, _ in producer.sent]


def test_disable_without_a_concurrent_write() -> None:
    producer = Producer()
    auto, table = disabler(producer)
    assert asyncio.run(auto.disable(SUB_ID, "gone", "the endpoint answered 410 Gone"))
    assert topics(producer) == [SUBSCRIPTIONS, OPERATOR_EVENTS]
    now = table.get(SUB_ID)
    assert now is not None and not now.is_active and now.disabled_reason
    assert now.target_url == ACTIVE.target_url


def test_a_write_read_after_the_disable_wins() -> None:
    producer = Producer()
    auto, table = disabler(producer, after_write=lambda t: t.apply(SUB_ID, PATCHED, 5))
    assert not asyncio.run(auto.disable(SUB_ID, "gone", "410"))
    assert topics(producer) == [SUBSCRIPTIONS, SUBSCRIPTIONS]  # no operator event
    rewritten = orjson.loads(producer.sent[-1][1] or b"")
    assert rewritten["target_url"] == PATCHED.target_url and rewritten["is_active"] is True
    assert _record(table.get(SUB_ID)) == PATCHED.to_record()


def test_a_write_read_before_the_disable_is_acknowledged_wins() -> None:
    auto, table = disabler(Producer())
    auto.producer.during_send = lambda: table.apply(SUB_ID, PATCHED, 5)  # type: ignore[attr-defined]
    assert not asyncio.run(auto.disable(SUB_ID, "failing", "only failures"))
    assert _record(table.get(SUB_ID)) == PATCHED.to_record()


def test_already_inactive_is_left_alone() -> None:
    producer = Producer()
    auto, table = disabler(producer)
    table.apply(SUB_ID, msgspec.structs.replace(ACTIVE, is_active=False), 2)
    assert not asyncio.run(auto.disable(SUB_ID, "gone", "410"))
    assert producer.sent == []


def test_breaker_states() -> None:
    async def run() -> list[str]:
        seen: list[str] = []
        breaker = Breaker(3, 2 / 3, 0.05, 5.0, lambda b: seen.append(b.state))
        for failed in (True, False, True):  # two of the last three failed: open
            assert await breaker.admit() is False
            breaker.record(failed, False)
        assert breaker.state == "open"
        probe = await asyncio.wait_for(breaker.admit(), 5)  # after the cool-down: the probe
        assert probe is True and breaker.state == "half_open"
        waiting = asyncio.create_task(breaker.admit())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # one probe at a time
        breaker.record(False, True)  # its success closes
        assert await asyncio.wait_for(waiting, 5) is False
        return seen

    assert asyncio.run(run()) == ["open", "half_open", "closed"]


def _record(sub: Subscription | None) -> dict[str, object] | None:
    """The API's view of what the table holds (it keeps a compact form: secret sealed)."""
    return None if sub is None else sub.to_record()
