"""The parked partition's state machine (delivery_agents/fifo_log.py): queues per key, heads,
redone ingest records, halts and operator commands, and where a new owner replays from."""

from __future__ import annotations

from typing import Any

from delivery_agents.fifo_log import PartitionLog


def enq(log: PartitionLog, offset: int, key: str, webhook_id: str, source: int) -> str | None:
    return log.apply(offset, "enq", {"key": key, "webhook_id": webhook_id, "source": source})


def op(log: PartitionLog, offset: int, name: str, key: str, webhook_id: str, **extra: Any) -> Any:
    return log.apply(offset, name, {"key": key, "webhook_id": webhook_id, **extra})


def test_one_head_per_key_and_the_next_starts_at_its_end() -> None:
    log = PartitionLog()
    assert enq(log, 0, "a", "a1", 10) == "a"  # idle key: a head at once
    assert enq(log, 1, "b", "b1", 11) == "b"  # another key: not waiting behind a
    assert enq(log, 2, "a", "a2", 12) is None  # behind a1
    assert log.head("a") == (0, "a1") and log.waiting() == 1
    assert op(log, 3, "end", "b", "b1") is None and log.head("b") is None
    assert op(log, 4, "end", "a", "a1") == "a" and log.head("a") == (2, "a2")


def test_a_redone_ingest_record_is_not_queued_twice() -> None:
    log = PartitionLog()
    enq(log, 0, "a", "a1", 10)
    enq(log, 1, "a", "a2", 11)
    assert enq(log, 2, "a", "a1", 10) is None  # after a crash, ingest offset 10 again
    assert enq(log, 3, "a", "a2", 11) is None
    assert [w for _, w, _ in log.keys["a"].entries] == ["a1", "a2"]


def test_stale_events_change_nothing() -> None:
    log = PartitionLog()
    enq(log, 0, "a", "a1", 1)
    enq(log, 1, "a", "a2", 2)
    op(log, 2, "end", "a", "a1")
    # a redelivered a1 ends again (the old owner, after a rebalance): a2 stays the head
    assert op(log, 3, "end", "a", "a1") is None and log.head("a") == (1, "a2")
    assert op(log, 4, "att", "a", "a1", attempt=3, due_ms=5) is None
    assert log.keys["a"].attempt == 0


def test_retry_progress_survives_a_replay() -> None:
    log = PartitionLog()
    enq(log, 0, "a", "a1", 1)
    op(log, 1, "att", "a", "a1", attempt=2, due_ms=1234)
    assert (log.keys["a"].attempt, log.keys["a"].due_ms) == (2, 1234)


def test_halt_then_resume_or_skip() -> None:
    log = PartitionLog()
    enq(log, 0, "a", "a1", 1)
    enq(log, 1, "a", "a2", 2)
    op(log, 2, "halt", "a", "a1")
    assert log.keys["a"].halted and log.head("a") == (0, "a1")
    assert log.apply(3, "resume", {"webhook_id": "a2"}) is None  # not the head
    assert log.apply(4, "resume", {"webhook_id": "a1"}) == "a"
    assert not log.keys["a"].halted and log.keys["a"].attempt == 0
    op(log, 5, "halt", "a", "a1")
    assert log.apply(6, "skip", {"webhook_id": "a1"}) == "a" and log.head("a") == (1, "a2")
    assert log.apply(7, "resume", {"webhook_id": "zz"}) is None


def test_floor_is_the_oldest_head_or_the_end() -> None:
    log = PartitionLog()
    enq(log, 0, "a", "a1", 1)
    enq(log, 1, "b", "b1", 5)
    enq(log, 2, "a", "a2", 7)
    assert log.floor() == (0, 0)
    op(log, 3, "end", "a", "a1")
    assert log.floor() == (1, 4)  # b1; ingest offsets up to 4 were enqueued before it
    op(log, 4, "end", "b", "b1")
    assert log.floor() == (2, 6)  # a2
    op(log, 5, "end", "a", "a2")
    assert log.floor() == (6, 7) and not log.keys


def test_a_replay_from_the_floor_rebuilds_the_same_queues() -> None:
    events = [
        ("enq", {"key": "a", "webhook_id": "a1", "source": 1}),
        ("enq", {"key": "a", "webhook_id": "a2", "source": 2}),
        ("enq", {"key": "b", "webhook_id": "b1", "source": 3}),
        ("end", {"key": "a", "webhook_id": "a1"}),
        ("enq", {"key": "a", "webhook_id": "a3", "source": 4}),
        ("enq", {"key": "a", "webhook_id": "a2", "source": 2}),  # redone after a crash
        ("att", {"key": "a", "webhook_id": "a2", "attempt": 1, "due_ms": 9}),
    ]
    full = PartitionLog()
    for offset, (name, data) in enumerate(events):
        full.apply(offset, name, data)
    start, max_source = full.floor()
    again = PartitionLog(max_source=max_source, next_offset=start)
    for offset, (name, data) in list(enumerate(events))[start:]:
        again.apply(offset, name, data)
    assert again.keys == full.keys and again.floor() == full.floor()
