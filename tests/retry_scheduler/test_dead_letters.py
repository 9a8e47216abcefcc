"""The scheduler's dead letters are counted like the agents': a hand-back the due topic refuses
for good (its size) ends in the dead-letter topic and in webhookmaster_dead_lettered_total."""

from __future__ import annotations

import base64
import os
import time

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client import REGISTRY

from schemas.topics import DEAD_LETTER, DUE, RETRY_TIERS
from tests.support.pipeline import ingest_record, running
from tests.support.records import produce
from tests.support.topics import read
from webhookmaster import retry_ladder
from webhookmaster.kafka_clients import admin_client
from webhookmaster.settings import Settings


def refused() -> float:
    value = REGISTRY.get_sample_value("webhookmaster_dead_lettered_total", {"kind": "refused"})
    return value or 0.0


async def test_a_refused_hand_back_is_dead_lettered_and_counted(settings: Settings) -> None:
    admin = admin_client(settings)
    small = ConfigResource(
        ConfigResource.Type.TOPIC,
        settings.topic(DUE),
        incremental_configs=[
            ConfigEntry("max.message.bytes", "2048", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([small]).values():
        future.result(10)
    # incompressible: the producer compresses (lz4), the broker checks the compressed batch
    blob = base64.b64encode(os.urandom(15_000)).decode()
    record = ingest_record("2f0c8a3e-7b1d-4c5e-9a2f-3d4e5f6a7b8c", {"blob": blob})
    record["attempt"] = 1
    due_now = str(int(time.time() * 1000)).encode()
    produce(
        settings,
        [(RETRY_TIERS[0][0], record["subscription_id"], record)],
        headers=[(retry_ladder.DUE_HEADER, due_now)],
    )
    before = refused()
    async with running(settings, agents=0):
        [letter] = await read(settings, DEAD_LETTER, 1, timeout=60)
    assert "hand-back refused by Kafka" in letter["reason"]
    assert letter["source"]["topic"] == settings.topic(RETRY_TIERS[0][0])
    assert refused() == before + 1
