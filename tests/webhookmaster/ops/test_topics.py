"""The topic catalogue, applied to the real broker and read back with the AdminClient."""

from __future__ import annotations

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from schemas.topics import (
    ATTEMPTS,
    DUE,
    IDEMPOTENCY,
    INGEST,
    PARKED,
    RETENTION_72H_MS,
    RETRY_TIERS,
    SUBSCRIPTIONS,
)
from tests.support.waiting import eventually
from webhookmaster.kafka_clients import admin_client
from webhookmaster.ops import topics_admin
from webhookmaster.settings import Settings


def test_catalogue_names_every_topic(wm_settings: Settings) -> None:
    names = [s.name for s in topics_admin.topic_specs(wm_settings)]
    prefix = wm_settings.topic_prefix
    assert names == [
        prefix + "ingest",
        prefix + "due",
        prefix + "parked",
        *(prefix + t for t, _ in RETRY_TIERS),
        prefix + "deadletter",
        prefix + "attempts",
        prefix + "subscriptions",
        prefix + "circuits",
        prefix + "operator-events",
        prefix + "idempotency",
    ]
    assert [d for _, d in RETRY_TIERS] == [10, 30, 60, 300, 900]


def test_broker_reports_catalogue_configs(wm_settings: Settings) -> None:
    configs = topics_admin.read_configs(wm_settings)
    metadata = admin_client(wm_settings).list_topics(timeout=10).topics
    claims = wm_settings.topic(IDEMPOTENCY)
    for spec in topics_admin.topic_specs(wm_settings):
        if spec.name != claims:
            assert configs[spec.name]["retention.ms"] == str(RETENTION_72H_MS), spec.name
        assert len(metadata[spec.name].partitions) == spec.partitions
    # the de-duplication claims: co-partitioned with ingest, kept for the idempotency window
    assert configs[claims]["cleanup.policy"] == "compact,delete"
    assert configs[claims]["retention.ms"] == str(round(wm_settings.idempotency_window_s * 1000))
    assert len(metadata[claims].partitions) == len(metadata[wm_settings.topic(INGEST)].partitions)
    sub = wm_settings.topic(SUBSCRIPTIONS)
    assert configs[sub]["cleanup.policy"] == "compact"
    assert configs[wm_settings.topic(INGEST)]["cleanup.policy"] == "delete"
    assert len(metadata[wm_settings.topic(INGEST)].partitions) == 3  # WM_TOPIC_PARTITIONS
    # FIFO queues live on the parked partition of their ingest partition's number
    assert len(metadata[wm_settings.topic(PARKED)].partitions) == 3


async def test_apply_is_idempotent_and_repairs_drift(wm_settings: Settings) -> None:
    assert topics_admin.ensure_topics(wm_settings) == []
    ingest = wm_settings.topic(INGEST)
    admin = admin_client(wm_settings)
    drift = ConfigResource(
        ConfigResource.Type.TOPIC,
        ingest,
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([drift]).values():
        future.result(10)

    def retention() -> str:
        return topics_admin.read_configs(wm_settings)[ingest]["retention.ms"]

    assert await eventually(lambda: retention() == "1000")
    topics_admin.ensure_topics(wm_settings)
    assert await eventually(lambda: retention() == str(RETENTION_72H_MS))


async def test_partition_count_grows_with_setting(wm_settings: Settings) -> None:
    from dataclasses import replace

    wider = replace(wm_settings, topic_partitions=5)
    topics_admin.ensure_topics(wider)
    admin = admin_client(wider)
    attempts = wider.topic(ATTEMPTS)
    assert await eventually(
        lambda: len(admin.list_topics(timeout=10).topics[attempts].partitions) == 5
    )


async def test_due_topic_follows_the_ingest_topics_partitions(wm_settings: Settings) -> None:
    """The due topic is co-partitioned with the ingest topic: an ingest topic grown by hand
    (beyond WM_TOPIC_PARTITIONS) gets a due topic of as many partitions at the next apply."""
    from confluent_kafka.admin import NewPartitions

    admin = admin_client(wm_settings)
    ingest, due = wm_settings.topic(INGEST), wm_settings.topic(DUE)
    for future in admin.create_partitions([NewPartitions(ingest, 4)]).values():
        future.result(10)

    def count(topic: str) -> int:
        return len(admin.list_topics(timeout=10).topics[topic].partitions)

    assert await eventually(lambda: count(ingest) == 4)
    assert count(due) == 3
    topics_admin.ensure_topics(wm_settings)
    assert await eventually(lambda: count(due) == 4)
    assert count(wm_settings.topic(ATTEMPTS)) == 3  # the others keep the setting's count
