"""Kafka 3.x: the whole pipeline on an Apache Kafka 3.9 broker (classic consumer groups), and the
consumer group protocol setting (WM_KAFKA_GROUP_PROTOCOL) with its detection.

The 3.9 broker is this module's own (its state folder under the test state folder, its own
ports: WM_TEST_KAFKA39_PORT / WM_TEST_KAFKA39_CONTROLLER_PORT, else free ones), assembled from
Maven Central like the session's 4.x broker, which stays as it is. PostgreSQL is the session's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, KafkaException
from confluent_kafka.admin import ConfigResource, ConsumerGroupDescription

from devstack import kafka_broker
from devstack.errors import StackError
from schemas.topics import INGEST
from status_projector.consumer import group_id as projector_group
from tests.support.db import drop_schema
from tests.support.env import TEST_ENV, TEST_STATE_DIR, clean_env
from tests.support.gateway import LiveGateway, running_gateway
from tests.support.pipeline import full_pipeline, running
from tests.support.ports import free_port
from tests.support.receiver import Receiver, Reply
from tests.support.topics import consume
from tests.support.waiting import eventually
from webhookmaster import kafka_clients, retry_ladder
from webhookmaster import settings as settings_mod
from webhookmaster.kafka_clients import (
    admin_client,
    consumer_config,
    detect_group_protocol,
    group_protocol,
)
from webhookmaster.ops import migrate, topics_admin
from webhookmaster.settings import Settings, SettingsError

# The newest 3.x release Maven Central serves here (kafka_2.13 3.9.1).
KAFKA3_VERSION = os.environ.get("WM_TEST_KAFKA39_VERSION", "3.9.1")
WAIT = 90.0  # bound of each pipeline wait (a loaded machine; classic joins take a few seconds)


@pytest.fixture(scope="module")
def kafka39(base_settings: Settings) -> Iterator[dict[str, str]]:
    """A running Apache Kafka 3.9 broker; yields the environment that reaches it (and the
    session's PostgreSQL). Stopped, its data removed, at the module's end."""
    state = Path(TEST_STATE_DIR) / "kafka-3.9"
    shutil.rmtree(state / "kafka", ignore_errors=True)  # a fresh cluster each run
    env = {
        **TEST_ENV,
        "WM_STATE_DIR": str(state),
        "WM_KAFKA_VERSION": KAFKA3_VERSION,
        "WM_KAFKA_PORT": os.environ.get("WM_TEST_KAFKA39_PORT") or str(free_port()),
        "WM_KAFKA_CONTROLLER_PORT": (
            os.environ.get("WM_TEST_KAFKA39_CONTROLLER_PORT") or str(free_port())
        ),
        "WM_KAFKA_HEAP": "-Xms128m -Xmx512m",
        "WM_DATABASE_URL": base_settings.dsn,
        "WM_CACHE_DIR": base_settings.cache_dir,
    }
    broker = settings_mod.load(clean_env(**env))
    try:
        kafka_broker.start(broker)
        yield env
    finally:
        kafka_broker.stop(broker)
        shutil.rmtree(state / "kafka", ignore_errors=True)


@pytest.fixture
def settings39(kafka39: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on the 3.9 broker for one test: unique topic prefix (topics created), a fresh
    schema, loopback targets, a one-second ladder; the group protocol from the test's param."""
    tag = uuid.uuid4().hex[:10]
    settings = settings_mod.load(
        clean_env(**kafka39, WM_KAFKA_GROUP_PROTOCOL=getattr(request, "param", "auto")),
        topic_prefix=f"k{tag}.",
        db_schema=f"k_{tag}",
        allowed_cidrs="127.0.0.0/8",
        retry_ladder="1,1,1,1,1",
    )
    topics_admin.ensure_topics(settings)
    asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    yield settings
    asyncio.run(drop_schema(settings))
    topics_admin.delete_topics(settings)


def test_the_broker_is_apache_kafka_3_9(kafka39: dict[str, str]) -> None:
    """The module's broker process runs the 3.9 jars and says it speaks the 3.9 protocol."""
    settings = settings_mod.load(clean_env(**kafka39))
    pid = kafka_broker.running(settings)
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"kafka-{KAFKA3_VERSION}/libs/*".encode() in b" ".join(cmdline)
    libs = kafka_broker.paths(settings)["libs"]
    assert [p.name for p in libs.glob("kafka_2.13-*.jar")] == [f"kafka_2.13-{KAFKA3_VERSION}.jar"]
    admin = admin_client(settings)
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    config = admin.describe_configs([broker])[broker].result(timeout=30)
    assert config["inter.broker.protocol.version"].value.startswith("3.9-")


def test_auto_detects_classic_on_3_9_and_consumer_on_4_x(
    kafka39: dict[str, str], base_settings: Settings
) -> None:
    """3.9 serves only classic groups by default (its group.coordinator.rebalance.protocols is
    'classic'); 4.x lists 'consumer' too."""
    on39 = settings_mod.load(clean_env(**kafka39))
    assert detect_group_protocol(on39, timeout=30) == "classic"
    assert group_protocol(on39) == "classic"
    assert consumer_config(on39, "g")["partition.assignment.strategy"] == "cooperative-sticky"
    assert detect_group_protocol(base_settings, timeout=30) == "consumer"
    assert group_protocol(base_settings) == "consumer"
    assert "partition.assignment.strategy" not in consumer_config(base_settings, "g")


def describe_group(settings: Settings, group: str) -> ConsumerGroupDescription:
    """A consumer group as the broker describes it (the admin client lives until the answer:
    librdkafka fails the requests of a client that is destroyed)."""
    admin = admin_client(settings)
    future = admin.describe_consumer_groups([group], request_timeout=15)[group]
    return future.result(timeout=30)


def group_members(
    settings: Settings, group: str
) -> tuple[ConsumerGroupType, str, int, ConsumerGroupState]:
    """(type, partition assignor, members, state) of a consumer group."""
    found = describe_group(settings, group)
    return found.type, found.partition_assignor, len(found.members), found.state


@pytest.mark.parametrize("settings39", ["auto", "classic"], indirect=True)
async def test_pipeline_delivers_and_retries_on_kafka_3_9(settings39: Settings) -> None:
    """Gateway ingest, delivery to a loopback receiver, a 500 that goes through the first retry
    tier and is delivered on the retry, statuses in PostgreSQL: on 3.9, with classic groups
    (cooperative-sticky) for the agents, the scheduler and the projector."""
    settings = settings39
    receiver = await Receiver().start()
    receiver.script("/flaky", Reply(500, "first"))
    conn = await asyncpg.connect(settings.dsn, server_settings={"search_path": settings.db_schema})
    try:
        async with full_pipeline(settings) as gateway:
            ok = await gateway.create_subscription(target_url=receiver.url("/ok"))
            flaky = await gateway.create_subscription(target_url=receiver.url("/flaky"))
            ids = {}
            for name, sub in (("ok", ok), ("flaky", flaky)):
                reply = await gateway.ingest(sub, orjson.dumps({"n": name}), event_type="t.x")
                assert reply.status == 202, reply.body
                ids[name] = reply.json["id"]

            async def delivered() -> bool:
                rows = await conn.fetch(
                    "SELECT id FROM webhooks WHERE status = 'DELIVERED' AND id = ANY($1::text[])",
                    list(ids.values()),
                )
                return len(rows) == 2

            assert await eventually(delivered, timeout=WAIT), "not both delivered in PostgreSQL"
            groups = {
                name: await asyncio.to_thread(group_members, settings, name)
                for name in (
                    settings.group("agents"),
                    settings.group("scheduler"),
                    projector_group(settings),
                )
            }
            status = await gateway.call("GET", f"/api/status/{ids['flaky']}/")
        rows = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, status, attempt_count, last_status_code FROM webhooks "
                "WHERE id = ANY($1::text[])",
                list(ids.values()),
            )
        }
        attempts = await conn.fetch(
            "SELECT attempt_number, status_code, outcome FROM delivery_attempts "
            "WHERE webhook_id = $1 ORDER BY attempt_number",
            ids["flaky"],
        )
    finally:
        await conn.close()
        await receiver.stop()

    assert (rows[ids["ok"]]["status"], rows[ids["ok"]]["attempt_count"]) == ("DELIVERED", 1)
    assert (rows[ids["flaky"]]["status"], rows[ids["flaky"]]["attempt_count"]) == ("DELIVERED", 2)
    assert [tuple(a) for a in attempts] == [(1, 500, "retrying"), (2, 200, "delivered")]
    assert status.status == 200 and status.json["status"] == "DELIVERED"
    assert [h.body for h in receiver.on("/flaky")] == [orjson.dumps({"n": "flaky"})] * 2
    # the failure went through the first retry tier's topic
    tier = retry_ladder.tiers(settings.topic_prefix, settings.retry_ladder)[0].topic
    held = await asyncio.to_thread(consume, settings, tier, 1)
    assert len(held) == 1 and held[0].key() == flaky["id"].encode()
    # every group is a classic one, assigned by the cooperative-sticky assignor
    for name, (kind, assignor, members, state) in groups.items():
        assert kind == ConsumerGroupType.CLASSIC, (name, kind)
        assert (assignor, members) == ("cooperative-sticky", 1), (name, assignor, members)
        assert state == ConsumerGroupState.STABLE, (name, state)


def ingest_owners(settings: Settings) -> list[list[int]]:
    """The ingest partitions each member of the agents' group owns, as the broker says."""
    found = describe_group(settings, settings.group("agents"))
    return sorted(
        sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic.endswith(INGEST))
        for m in found.members
    )


async def owners_become(settings: Settings, wanted: list[list[int]] | int) -> list[list[int]]:
    """Wait (bounded) until the agents' group shows ``wanted``: that exact assignment, or that
    many members each owning at least one ingest partition, all three owned."""
    seen: list[list[int]] = []

    async def check() -> bool:
        try:
            seen[:] = await asyncio.to_thread(ingest_owners, settings)
        except KafkaException:
            return False  # the group not there yet
        if isinstance(wanted, int):
            spread = sorted(p for parts in seen for p in parts) == [0, 1, 2]
            return len(seen) == wanted and spread and all(seen)
        return seen == wanted

    assert await eventually(check, timeout=WAIT, interval=0.5), f"owners {seen}, wanted {wanted}"
    return seen


async def test_agents_join_and_leave_with_incremental_rebalances_on_3_9(
    settings39: Settings,
) -> None:
    """Classic cooperative rebalancing on 3.9: one agent owns the three ingest partitions; a
    second joins and takes a share while the first keeps its rest; the second leaves and its
    share goes back. Records produced in each phase arrive, each once (a member commits what it
    finished before giving a partition up)."""
    settings = settings39
    receiver = await Receiver().start()

    async def deliver(sub: dict[str, Any], gateway: LiveGateway, batch: range) -> None:
        for i in batch:
            reply = await gateway.ingest(sub, orjson.dumps({"i": i}), event_type="t.x")
            assert reply.status == 202, reply.body
        assert await receiver.wait_for(lambda: len(receiver.on("/many")) >= batch.stop, WAIT)

    try:
        async with running_gateway(settings) as gateway, running(settings, scheduler=False):
            sub = await gateway.create_subscription(target_url=receiver.url("/many"))
            await owners_become(settings, [[0, 1, 2]])
            await deliver(sub, gateway, range(0, 10))
            async with running(settings, scheduler=False):
                shared = await owners_become(settings, 2)
                await deliver(sub, gateway, range(10, 20))
            await owners_become(settings, [[0, 1, 2]])
            await deliver(sub, gateway, range(20, 30))
    finally:
        await receiver.stop()
    assert len(shared) == 2 and all(shared), shared
    assert sorted(orjson.loads(h.body)["i"] for h in receiver.on("/many")) == list(range(30))


# --- the setting, broker-free ------------------------------------------------------------


def test_group_protocol_setting_is_validated() -> None:
    assert settings_mod.load({}).kafka_group_protocol == "auto"
    for value in ("auto", "consumer", "classic"):
        assert settings_mod.load({"WM_KAFKA_GROUP_PROTOCOL": value}).kafka_group_protocol == value
    with pytest.raises(SettingsError, match=r"^WM_KAFKA_GROUP_PROTOCOL: expected auto"):
        settings_mod.load({"WM_KAFKA_GROUP_PROTOCOL": "eager"})


def test_each_protocol_gets_only_the_properties_it_accepts() -> None:
    """librdkafka builds a consumer from either protocol's configuration, and refuses the
    classic-only properties with group.protocol=consumer (why they are set for classic only)."""
    for value in ("consumer", "classic"):
        settings = settings_mod.load(
            {"WM_KAFKA_GROUP_PROTOCOL": value, "WM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
        )
        Consumer(consumer_config(settings, "g")).close()
    assert kafka_clients.group_protocol_config("classic") == {
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
    }
    consumer = kafka_clients.group_protocol_config("consumer")
    assert consumer == {"group.protocol": "consumer"}
    base = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "group.id": "g", **consumer}
    for name, value in (
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("session.timeout.ms", 10_000),
        ("heartbeat.interval.ms", 3_000),
    ):
        with pytest.raises(KafkaException, match=f"`{name}` is not supported"):
            Consumer({**base, name: value})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # as the brokers describe themselves (values read from 4.1.1 and 3.9.1 brokers)
        ({"group.coordinator.rebalance.protocols": "classic,consumer,streams"}, "consumer"),
        ({"group.coordinator.rebalance.protocols": "classic"}, "classic"),  # 4.x, turned off
        (
            {
                "group.coordinator.rebalance.protocols": "classic",
                "inter.broker.protocol.version": "3.9-IV0",
            },
            "classic",
        ),
        (  # 3.9 with the KIP-848 preview on: librdkafka got no assignment from it
            {
                "group.coordinator.rebalance.protocols": "classic,consumer",
                "inter.broker.protocol.version": "3.9-IV0",
            },
            "classic",
        ),
        ({"inter.broker.protocol.version": "3.6-IV2"}, "classic"),  # before the setting
    ],
)
def test_auto_picks_the_protocol_from_the_broker_configuration(
    config: dict[str, str], expected: str
) -> None:
    assert kafka_clients.protocol_for(config) == expected


def test_an_explicit_protocol_asks_no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit choice is taken as it is: no detection round."""

    def asked(*args: object) -> None:
        raise AssertionError("the broker was asked")

    monkeypatch.setattr(kafka_clients, "detect_group_protocol", asked)
    for value in ("consumer", "classic"):
        settings = settings_mod.load(
            {"WM_KAFKA_GROUP_PROTOCOL": value, "WM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
        )
        assert group_protocol(settings) == value
        assert consumer_config(settings, "g")["group.protocol"] == value


def test_auto_falls_back_to_classic_when_no_broker_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Classic is served by every broker: the safe choice when the cluster cannot be asked;
    not remembered, so the next consumer asks again."""
    monkeypatch.setattr(kafka_clients, "DETECT_TIMEOUT_S", 1.0)
    settings = settings_mod.load({"WM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert detect_group_protocol(settings, timeout=1.0) is None
    assert group_protocol(settings) == "classic"
    assert settings.bootstrap not in kafka_clients._DETECTED


def test_the_stack_refuses_kafka_older_than_3_9() -> None:
    for version in ("3.8.1", "2.8.2"):
        with pytest.raises(StackError, match=r"3\.9 or newer"):
            kafka_broker.check_version(version)
    with pytest.raises(StackError, match="not a Kafka release"):
        kafka_broker.check_version("latest")
    for version in ("3.9.1", "4.1.1", "10.0.0"):
        kafka_broker.check_version(version)
