"""Reading a time window of the ingest topic for a replay: each partition from the first
record at or after ``since`` (``offsets_for_times``) to the first at or after ``until`` (or
its end when ``until`` is still to come). Blocking: the replay job calls it in a thread."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, Message, TopicPartition

from webhookmaster.kafka_clients import consumer_config, record_offset
from webhookmaster.settings import Settings

TIMEOUT_S = 30.0
BATCH = 500


@dataclass(frozen=True)
class Span:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    partition: int
    start: int
    end: int


class WindowReader:
    """The records of ``topic`` between two timestamps (ms), partition by partition."""

    def __init__(self, settings: Settings, topic: str, since_ms: int, until_ms: int) -> None:
        self.topic = topic
        # assigned partitions only, never a group member: no group protocol to ask
        self._consumer = Consumer(
            consumer_config(
                settings, f"wm-replay-{uuid.uuid4().hex}", **{"group.protocol": "classic"}
            )
        )
        try:  # before 1970: from the first record (negative times are special offsets)
            self.spans = self._spans(max(0, since_ms), max(0, until_ms))
        except BaseException:
            self._consumer.close()
            raise
        self.total = sum(s.end - s.start for s in self.spans)
        self._left = {s.partition: s.end for s in self.spans if s.end > s.start}
        if self._left:
            self._consumer.assign(
                [TopicPartition(topic, s.partition, s.start) for s in self.spans if s.end > s.start]
            )

    def _spans(self, since_ms: int, until_ms: int) -> list[Span]:
        metadata = self._consumer.list_topics(self.topic, timeout=TIMEOUT_S).topics[self.topic]
        if metadata.error is not None:
            raise RuntimeError(f"topic {self.topic}: {metadata.error.str()}")
        partitions = sorted(metadata.partitions)
        starts = self._consumer.offsets_for_times(
            [TopicPartition(self.topic, p, since_ms) for p in partitions], timeout=TIMEOUT_S
        )
        ends = self._consumer.offsets_for_times(
            [TopicPartition(self.topic, p, until_ms) for p in partitions], timeout=TIMEOUT_S
        )
        spans = []
        for start, end in zip(starts, ends, strict=True):
            high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, start.partition), timeout=TIMEOUT_S
            )[1]
            # -1 (OFFSET_END): no record at or after that time
            first = high if start.offset in (-1, OFFSET_END) else start.offset
            last = high if end.offset in (-1, OFFSET_END) else end.offset
            spans.append(Span(start.partition, first, max(first, last)))
        return spans

    def batch(self) -> list[Message]:
        """The next records of the window (empty once every partition is read to its end).
        A partition whose position passed its end without a record there (offsets a
        transaction marker took) is done too; none moving for ``TIMEOUT_S``: RuntimeError."""
        out: list[Message] = []
        idle_since = time.monotonic()
        while self._left and not out:
            messages = self._consumer.consume(BATCH, 1.0)
            for msg in messages:
                if msg.error() is not None:
                    continue
                partition = msg.partition()
                if partition is None or partition not in self._left:
                    continue
                end = self._left[partition]
                offset = record_offset(msg)
                if offset < end:
                    out.append(msg)
                if offset + 1 >= end:
                    self._done(partition)
            if not messages:
                for tp in self._consumer.position(
                    [TopicPartition(self.topic, p) for p in self._left]
                ):
                    if tp.offset >= 0 and tp.offset >= self._left[tp.partition]:
                        self._done(tp.partition)
                if time.monotonic() - idle_since > TIMEOUT_S:
                    raise RuntimeError(f"{self.topic}: no record came for {TIMEOUT_S:.0f} s")
            else:
                idle_since = time.monotonic()
        return out

    def _done(self, partition: int) -> None:
        self._left.pop(partition, None)
        self._consumer.pause([TopicPartition(self.topic, partition)])

    def close(self) -> None:
        self._consumer.close()
