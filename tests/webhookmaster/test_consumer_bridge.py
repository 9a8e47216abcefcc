"""Unit tests of the shared consumer bridge (webhookmaster/consumer_thread.py) against a fake
librdkafka consumer: what it commits, what it does with lost partitions, which error events it
passes on, and when its watchdog replaces the consumer. The real-broker behaviour (a projector
whose partitions were paused behind its back is replaced) is in
tests/status_projector/test_resilience.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from webhookmaster import consumer_thread
from webhookmaster.consumer_thread import ConsumerThread, FatalConsumerError, Watchdog

TP = ("t", 0)


class FakeConsumer:
    """Records the calls the bridge makes; partition ``TP`` has records up to offset 10."""

    made: list[FakeConsumer] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.commits: list[list[tuple[str, int, int]]] = []
        self.callbacks: dict[str, Any] = {}
        self.paused: set[tuple[str, int]] = set()
        self.position_at = 5
        self.closed = False
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def poll(self, timeout: float) -> None:
        return None

    def consume(self, n: int, timeout: float) -> list[Any]:
        return []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(*TP)]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.position_at) for tp in tps]

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return tps

    def get_watermark_offsets(self, tp: TopicPartition, **kwargs: Any) -> tuple[int, int]:
        return 0, 10

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in tps)

    def close(self) -> None:
        self.closed = True

    def assign_from_group(self, tps: list[tuple[str, int]]) -> None:
        self.callbacks["on_assign"](self, [TopicPartition(*tp) for tp in tps])


class Event:
    """A consumed message that is an error event."""

    def __init__(self, code: int, fatal: bool = False) -> None:
        self._error = KafkaError(code, "boom", fatal=fatal)

    def error(self) -> KafkaError:
        return self._error


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsumerThread]:
    FakeConsumer.made = []
    monkeypatch.setattr(consumer_thread, "Consumer", FakeConsumer)
    made = ConsumerThread(
        {"bootstrap.servers": "127.0.0.1:1"},
        ["t"],
        watchdog=Watchdog(stall_s=0, check_every_s=0),
    )
    made._subscribe()
    FakeConsumer.made[0].assign_from_group([TP])
    yield made
    made._executor.shutdown()


def test_only_offsets_marked_done_are_committed(bridge: ConsumerThread) -> None:
    fake = FakeConsumer.made[0]
    for offset in (5, 6, 7):
        bridge.tracker.started(TP, offset)
    bridge.tracker.done(TP, 5)
    bridge.tracker.done(TP, 7)  # 6 is not written yet: 7 waits behind it
    asyncio.run(bridge.commit())
    assert fake.commits == [[("t", 0, 6)]]
    bridge.tracker.done(TP, 6)
    asyncio.run(bridge.commit())
    assert fake.commits[-1] == [("t", 0, 8)]


def test_revoked_partitions_are_committed_lost_ones_are_not(bridge: ConsumerThread) -> None:
    fake = FakeConsumer.made[0]
    bridge.tracker.started(TP, 5)
    bridge.tracker.done(TP, 5)
    fake.callbacks["on_lost"](fake, [TopicPartition(*TP)])
    assert fake.commits == [] and bridge.assigned == set() and not bridge.joined
    fake.assign_from_group([TP])
    bridge.tracker.started(TP, 6)
    bridge.tracker.done(TP, 6)
    fake.callbacks["on_revoke"](fake, [TopicPartition(*TP)])
    assert fake.commits == [[("t", 0, 7)]] and bridge.assigned == set()


def test_error_events_are_dropped_and_a_fatal_one_raises(bridge: ConsumerThread) -> None:
    assert bridge.records([Event(KafkaError._PARTITION_EOF), Event(KafkaError._TRANSPORT)]) == []
    with pytest.raises(FatalConsumerError):
        bridge.records([Event(KafkaError._FATAL, fatal=True)])


def test_the_watchdog_replaces_at_the_second_same_sign(bridge: ConsumerThread) -> None:
    dog = bridge.watchdog
    assert dog is not None
    bridge._consume(10, 0, fill=False)  # first sign: maybe a record not fetched yet
    assert (dog.checks, dog.replaced, len(FakeConsumer.made)) == (1, 0, 1)
    dog.progress_at = 0  # the second check sees the same sign
    bridge._consume(10, 0, fill=False)
    assert (dog.checks, dog.replaced, len(FakeConsumer.made)) == (2, 1, 2)
    old, new = FakeConsumer.made
    assert bridge._consumer is new and new.callbacks and not bridge.joined
    assert bridge.assigned == set()
    old.callbacks["on_assign"](old, [TopicPartition(*TP)])  # the old one's late callback
    assert bridge.assigned == set()


def test_the_watchdog_leaves_a_consumer_alone_when_the_sign_moves_or_the_owner_paused(
    bridge: ConsumerThread,
) -> None:
    fake = FakeConsumer.made[0]
    dog = bridge.watchdog
    assert dog is not None
    for position in (5, 6, 10, 10):  # records fetched between checks; then nothing waits
        fake.position_at = position
        dog.progress_at = 0
        bridge._consume(10, 0, fill=False)
    fake.position_at = 5
    bridge.pause([TP])  # the owner holds the partition back (the scheduler does)
    for _ in range(3):
        dog.progress_at = 0
        bridge._consume(10, 0, fill=False)
    assert dog.checks == 7 and dog.replaced == 0 and len(FakeConsumer.made) == 1
