"""Unit tests of the commit coalescing (webhookmaster/commit_pacer.py): at most one
asynchronous commit in flight, at most one per interval, only offsets that advanced, failed
offsets offered again; and the consumer bridge's use of it against a fake librdkafka consumer,
with its idle poll (an owner that stops fetching keeps its group membership)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from webhookmaster import consumer_thread
from webhookmaster.commit_pacer import CommitPacer
from webhookmaster.consumer_thread import ConsumerThread

A = ("t", 0)
B = ("t", 1)


def test_one_commit_per_interval_and_none_while_one_is_in_flight() -> None:
    pacer = CommitPacer(interval_s=1.0, timeout_s=30.0)
    pacer.offer({A: 5})
    assert pacer.take(now=100.0) == {A: 5}
    pacer.offer({A: 9, B: 3})
    assert pacer.take(now=105.0) == {}, "the first commit has no answer yet"
    pacer.settled({A: 5}, {})
    assert pacer.take(now=105.0) == {A: 9, B: 3}
    pacer.settled({A: 9, B: 3}, {})
    pacer.offer({A: 12})
    assert pacer.take(now=105.5) == {}, "less than the interval since the last commit"
    assert pacer.take(now=106.0) == {A: 12}
    assert pacer.sent == 3


def test_offsets_coalesce_to_the_latest_and_unchanged_ones_are_not_sent() -> None:
    pacer = CommitPacer(interval_s=1.0, timeout_s=30.0)
    for offset in range(1, 200):
        pacer.offer({A: offset})
    assert pacer.take(now=0.0) == {A: 199}
    pacer.settled({A: 199}, {})
    pacer.offer({A: 199})  # acknowledged already
    pacer.offer({A: 150})  # behind the acknowledged offset
    assert pacer.take(now=10.0) == {}
    assert pacer.sent == 1


def test_a_failed_commit_is_offered_again_unless_a_newer_offset_came() -> None:
    pacer = CommitPacer(interval_s=0.5, timeout_s=30.0)
    pacer.offer({A: 5, B: 2})
    sent = pacer.take(now=0.0)
    pacer.offer({A: 8})
    pacer.settled({}, sent)
    assert pacer.failed == 1
    assert pacer.take(now=1.0) == {A: 8, B: 2}


def test_a_commit_with_no_answer_is_given_up_after_the_timeout() -> None:
    pacer = CommitPacer(interval_s=0.5, timeout_s=10.0)
    pacer.offer({A: 5})
    assert pacer.take(now=0.0) == {A: 5}
    assert pacer.take(now=9.0) == {}
    assert pacer.take(now=10.0) == {A: 5}, "its offsets go with the next commit"


def test_a_late_answer_to_an_older_commit_does_not_free_the_newer_one() -> None:
    pacer = CommitPacer(interval_s=0.5, timeout_s=10.0)
    pacer.offer({A: 5})
    first = pacer.take(now=0.0)
    pacer.offer({A: 7})
    assert pacer.take(now=10.0) == {A: 7}  # the first one timed out
    pacer.settled(first, {})
    assert pacer.in_flight()
    pacer.offer({A: 9})
    assert pacer.take(now=11.0) == {}


def test_take_all_sends_waiting_and_in_flight_offsets_at_once() -> None:
    pacer = CommitPacer(interval_s=60.0, timeout_s=60.0)
    pacer.offer({A: 5})
    assert pacer.take(now=0.0) == {A: 5}
    pacer.offer({B: 4})
    assert pacer.take(now=1.0) == {}
    assert pacer.take_all() == {A: 5, B: 4}
    assert not pacer.in_flight() and pacer.take_all() == {}


def test_only_assigned_partitions_are_committed_and_forgotten_ones_are_dropped() -> None:
    pacer = CommitPacer(interval_s=0.5, timeout_s=10.0)
    pacer.offer({A: 5, B: 6})
    assert pacer.take(now=0.0, assigned={A}) == {A: 5}
    pacer.settled({A: 5}, {})
    pacer.offer({A: 9})
    pacer.forget(A)
    assert pacer.take(now=1.0) == {}
    pacer.offer({A: 3})  # a new owner's offsets start again from the group's
    assert pacer.take(now=2.0) == {A: 3}


class FakeConsumer:
    """Records commits; an asynchronous one is answered when the test says so."""

    made: list[FakeConsumer] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.commits: list[tuple[bool, list[tuple[str, int, int]]]] = []
        self.callbacks: dict[str, Any] = {}
        self.paused: set[tuple[str, int]] = set()
        self.seeks: list[tuple[str, int, int]] = []
        self.polls = 0
        self.queued: list[Any] = []  # what poll() returns next
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def poll(self, timeout: float) -> Any:
        self.polls += 1
        return self.queued.pop(0) if self.queued else None

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in tps)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self.commits.append((asynchronous, [(tp.topic, tp.partition, tp.offset) for tp in offsets]))
        return offsets

    def answer(self, error: KafkaError | None = None) -> None:
        """librdkafka's on_commit for the last asynchronous commit."""
        last = [c for asynchronous, c in self.commits if asynchronous][-1]
        self.config["on_commit"](error, [TopicPartition(t, p, o) for t, p, o in last])

    def close(self) -> None:
        pass


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsumerThread]:
    FakeConsumer.made = []
    monkeypatch.setattr(consumer_thread, "Consumer", FakeConsumer)
    made = ConsumerThread({"bootstrap.servers": "127.0.0.1:1"}, ["t"], commit_interval_s=0.01)
    made._subscribe()
    fake = FakeConsumer.made[0]
    fake.callbacks["on_assign"](fake, [TopicPartition(*A), TopicPartition(*B)])
    yield made
    made._executor.shutdown()


def finish(bridge: ConsumerThread, tp: tuple[str, int], *offsets: int) -> None:
    for offset in offsets:
        bridge.tracker.started(tp, offset)
        bridge.tracker.done(tp, offset)


def fetch(bridge: ConsumerThread) -> None:
    asyncio.run(bridge.consume(10, 0))


def test_fetches_commit_asynchronously_one_at_a_time(bridge: ConsumerThread) -> None:
    fake = FakeConsumer.made[0]
    finish(bridge, A, 0, 1, 2)
    fetch(bridge)
    assert fake.commits == [(True, [("t", 0, 3)])]
    finish(bridge, A, 3)
    finish(bridge, B, 0)
    for _ in range(5):
        fetch(bridge)
    assert len(fake.commits) == 1, "no second commit while the first has no answer"
    fake.answer()
    fetch(bridge)  # (the interval of 10 ms passed while the fetches ran, or passes now)
    while len(fake.commits) == 1:
        fetch(bridge)
    assert fake.commits[1] == (True, [("t", 0, 4), ("t", 1, 1)])
    fake.answer()
    for _ in range(3):
        fetch(bridge)
    assert len(fake.commits) == 2, "nothing advanced: nothing sent"


def test_a_failed_asynchronous_commit_goes_with_the_next_one(
    bridge: ConsumerThread, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeConsumer.made[0]
    finish(bridge, A, 0)
    fetch(bridge)
    fake.answer(KafkaError(KafkaError.REQUEST_TIMED_OUT))
    assert "offset commit failed" in caplog.text
    while len(fake.commits) == 1:
        fetch(bridge)
    assert fake.commits[1] == (True, [("t", 0, 1)])


def test_revocation_commits_synchronously_what_is_in_flight_or_waiting(
    bridge: ConsumerThread,
) -> None:
    fake = FakeConsumer.made[0]
    finish(bridge, A, 0)
    fetch(bridge)
    finish(bridge, A, 1)
    finish(bridge, B, 0, 1)
    fake.callbacks["on_revoke"](fake, [TopicPartition(*A), TopicPartition(*B)])
    assert fake.commits[-1] == (False, [("t", 0, 2), ("t", 1, 2)])
    assert bridge.pacer.waiting() == {} and not bridge.pacer.in_flight()


class Record:
    def __init__(self, tp: tuple[str, int], offset: int) -> None:
        self.tp, self._offset = tp, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self.tp[0]

    def partition(self) -> int:
        return self.tp[1]

    def offset(self) -> int:
        return self._offset


def test_an_owner_that_stops_fetching_is_polled_with_its_partitions_paused(
    bridge: ConsumerThread,
) -> None:
    fake = FakeConsumer.made[0]
    bridge.pause([B])  # the owner's own pause stays the owner's
    bridge._idle_poll()
    assert fake.polls == 0, "the owner fetched a moment ago"
    finish(bridge, A, 0)
    bridge._fetched_at -= consumer_thread.IDLE_POLL_S + 1
    fake.queued = [Record(A, 7)]  # fetched before the pause took effect
    bridge._idle_poll()
    assert fake.polls == 1 and fake.paused == {A, B} and bridge.held == {A}
    assert fake.seeks == [("t", 0, 7)], "the record that came anyway is fetched again later"
    assert fake.commits == [(True, [("t", 0, 1)])], "finished work is committed meanwhile"
    fetch(bridge)
    assert fake.paused == {B} and bridge.held == set()
