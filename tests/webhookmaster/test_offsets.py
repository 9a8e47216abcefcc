"""The offset tracker (webhookmaster/offsets.py): only the contiguous prefix of finished
records is committed."""

from __future__ import annotations

from webhookmaster.offsets import OffsetTracker


def test_tracker_commits_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    tp = ("t", 0)
    for offset in (5, 6, 7, 8):
        tracker.started(tp, offset)
    tracker.done(tp, 7)
    assert tracker.committable() == {}
    tracker.done(tp, 5)
    assert tracker.committable() == {tp: 6}
    tracker.done(tp, 6)
    assert tracker.committable() == {tp: 8}
    assert tracker.committable() == {}  # unchanged since the last call
    assert tracker.in_flight(tp) == 1
    tracker.forget(tp)
    tracker.done(tp, 8)  # a late completion for a revoked partition
    assert tracker.committable() == {}
