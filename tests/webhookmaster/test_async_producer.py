"""``AsyncProducer.send_all`` on the real broker: every record lands as given, the call returns
only once all are acknowledged, and a record no retry can send raises a permanent error."""

from __future__ import annotations

import pytest

from schemas.topics import INGEST, MAX_MESSAGE_BYTES
from tests.support.topics import read_to_end
from webhookmaster.kafka_clients import AsyncProducer, ProduceError, producer_config
from webhookmaster.settings import Settings


async def test_send_all_lands_every_record_as_given(wm_settings: Settings) -> None:
    topic = wm_settings.topic(INGEST)
    batch = [
        (f"body {i}".encode(), f"key-{i % 7}".encode(), [("h", str(i).encode())])
        for i in range(2_000)
    ]
    producer = AsyncProducer(producer_config(wm_settings))
    try:
        await producer.send_all(topic, batch)
        await producer.send_all(topic, [])  # nothing to send returns at once
    finally:
        producer.close()
    landed = read_to_end(wm_settings, topic, timeout=5)  # acknowledged: already readable
    assert sorted((m.value(), m.key(), m.headers()) for m in landed) == sorted(batch)
    by_key: dict[bytes, list[int]] = {}
    for msg in sorted(landed, key=lambda m: (m.partition(), m.offset())):
        by_key.setdefault(msg.key(), []).append(int(msg.headers()[0][1]))
    assert all(seq == sorted(seq) for seq in by_key.values())  # a key's records keep order


async def test_send_all_raises_a_permanent_error_for_a_record_too_large(
    wm_settings: Settings,
) -> None:
    producer = AsyncProducer(producer_config(wm_settings))
    try:
        with pytest.raises(ProduceError) as caught:
            too_large = b"x" * (MAX_MESSAGE_BYTES + 128 * 1024)
            await producer.send_all(
                wm_settings.topic(INGEST), [(b"ok", b"k", []), (too_large, b"k", [])]
            )
        assert caught.value.permanent
    finally:
        producer.close()
