"""Apply the topic catalogue to a cluster, idempotently: create what is missing, set configs that
differ, add partitions where the catalogue asks for more."""

from __future__ import annotations

import dataclasses
import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from schemas.topics import DUE, INGEST, TopicSpec, catalogue
from webhookmaster.kafka_clients import admin_client
from webhookmaster.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The catalogue with this deployment's prefix, partitions and retention."""
    return catalogue(
        settings.topic_prefix,
        settings.topic_partitions,
        settings.retention_ms,
        round(settings.idempotency_window_s * 1000),
    )


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Bring every catalogue topic to its spec; returns the names of topics created. The due
    topic gets at least as many partitions as the ingest topic has (they are co-partitioned:
    docs/delivery.md, One owner per subscription)."""
    admin = admin_client(settings)
    specs = topic_specs(settings)
    existing = admin.list_topics(timeout=timeout).topics
    ingest, due = settings.topic(INGEST), settings.topic(DUE)
    if ingest in existing:
        count = len(existing[ingest].partitions)
        specs = [
            dataclasses.replace(s, partitions=max(s.partitions, count)) if s.name == due else s
            for s in specs
        ]
    created = _create_missing(admin, [s for s in specs if s.name not in existing], timeout)
    present = [s for s in specs if s.name in existing]
    _grow_partitions(admin, present, {n: len(t.partitions) for n, t in existing.items()}, timeout)
    _align_configs(admin, present, timeout)
    return created


def missing_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """The catalogue topics the cluster does not have (``init --check``)."""
    existing = admin_client(settings).list_topics(timeout=timeout).topics
    return [s.name for s in topic_specs(settings) if s.name not in existing]


def _create_missing(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> list[str]:
    if not specs:
        return []
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config)
        for s in specs
    ]
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    log.info("created topics: %s", ", ".join(created) or "none")
    _await_visible(admin, [s.name for s in specs], timeout)
    return created


def _await_visible(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait until the broker's metadata shows every topic with a leader for each partition."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(
            n in topics
            and topics[n].error is None
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout} s: {names}")
        time.sleep(0.05)


def _grow_partitions(
    admin: AdminClient, specs: list[TopicSpec], counts: dict[str, int], timeout: float
) -> None:
    grow = [NewPartitions(s.name, s.partitions) for s in specs if counts[s.name] < s.partitions]
    for future in admin.create_partitions(grow, request_timeout=timeout).values() if grow else []:
        future.result(timeout)


def _align_configs(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> None:
    if not specs:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    current = {r.name: f.result(timeout) for r, f in admin.describe_configs(resources).items()}
    changes = []
    for spec in specs:
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in spec.config.items()
            if current[spec.name].get(key) is None or current[spec.name][key].value != value
        ]
        if entries:
            changes.append(
                ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
            )
    for future in admin.incremental_alter_configs(changes).values() if changes else []:
        future.result(timeout)


def read_configs(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, str]]:
    """Topic name → its configs as the broker reports them."""
    admin = admin_client(settings)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in topic_specs(settings)]
    return {
        r.name: {k: e.value for k, e in f.result(timeout).items()}
        for r, f in admin.describe_configs(resources).items()
    }


def delete_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Delete every catalogue topic of ``settings`` (tests and benchmarks clean up with it)."""
    admin = admin_client(settings)
    names = [s.name for s in topic_specs(settings)]
    for future in admin.delete_topics(names, request_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
