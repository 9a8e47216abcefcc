"""The pipeline on a secured Kafka: a private broker (its own state folder and ports, the
session's shared broker untouched) with a mutual-TLS listener and a SASL_SSL listener (SCRAM
users made at format time, certificates made here with openssl). Gateway → agent (a process)
→ receiver over loopback, retries through the scheduler, status in PostgreSQL; and wrong
credentials stop a component at start with one error line."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack import kafka_broker
from tests.support.db import drop_schema
from tests.support.env import TEST_ENV, clean_env, private_stack_env
from tests.support.kafka_tls import KEYSTORE_PASSWORD, Pki, make_pki
from tests.support.pipeline import full_pipeline, status_of
from tests.support.ports import free_port
from tests.support.processes import ComponentProcess, run_cli
from tests.support.receiver import Hit, Receiver, Reply
from webhookmaster import kafka_clients
from webhookmaster import settings as settings_mod
from webhookmaster.settings import Settings

USER, PASSWORD = "alice", "alice-Scram-pw"
EXIT_BOUND_S = 60.0  # far below the start-up check's timeout set below: no waiting it out
WAIT = 60.0


@dataclass(frozen=True)
class SecuredBroker:
    env: dict[str, str]  # the broker's stack variables (stack down uses them)
    pki: Pki
    ssl_port: int
    sasl_ssl_port: int
    folder: Path


@pytest.fixture(scope="module")
def secured(base_settings: Settings) -> Iterator[SecuredBroker]:
    with private_stack_env("kafkasec", WM_CACHE_DIR=base_settings.cache_dir) as env:
        folder = Path(env["WM_STATE_DIR"])
        pki = make_pki(folder / "pki")
        password_file = folder / "pki" / "sasl-password"
        password_file.write_text(PASSWORD + "\n")
        broker = SecuredBroker(env, pki, free_port(), free_port(), folder)
        listeners = kafka_broker.SecureListeners(
            keystore=pki.keystore,
            keystore_password=KEYSTORE_PASSWORD,
            ca_file=pki.ca_file,
            ssl_port=broker.ssl_port,
            sasl_ssl_port=broker.sasl_ssl_port,
            users=((USER, PASSWORD),),
        )
        try:
            kafka_broker.start(settings_mod.load(env), listeners)
            yield broker
        finally:
            run_cli(env, "stack", "down")


def sasl_env(broker: SecuredBroker, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    return {
        "WM_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker.sasl_ssl_port}",
        "WM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "WM_KAFKA_SSL_CA_FILE": str(broker.pki.ca_file),
        "WM_KAFKA_SASL_MECHANISM": mechanism,
        "WM_KAFKA_SASL_USERNAME": USER,
        "WM_KAFKA_SASL_PASSWORD_FILE": str(broker.folder / "pki" / "sasl-password"),
    }


def mtls_env(broker: SecuredBroker) -> dict[str, str]:
    return {
        "WM_KAFKA_BOOTSTRAP": f"localhost:{broker.ssl_port}",  # the certificate names localhost
        "WM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "WM_KAFKA_SSL_CA_FILE": str(broker.pki.ca_file),
        "WM_KAFKA_SSL_CERT_FILE": str(broker.pki.client_cert),
        "WM_KAFKA_SSL_KEY_FILE": str(broker.pki.client_key),
        "WM_KAFKA_SSL_KEY_PASSWORD_FILE": str(broker.pki.client_key_password_file),
    }


def deployment(kafka: dict[str, str]) -> dict[str, str]:
    """A whole deployment's variables: the secured Kafka, the session's PostgreSQL, a fresh
    topic prefix and schema, fast retries, loopback receivers allowed."""
    tag = uuid.uuid4().hex[:10]
    return clean_env(
        **{
            **TEST_ENV,
            **kafka,
            "WM_TOPIC_PREFIX": f"s{tag}.",
            "WM_DB_SCHEMA": f"s_{tag}",
            "WM_TOPIC_PARTITIONS": "2",
            "WM_ALLOWED_CIDRS": "127.0.0.0/8",
            "WM_RETRY_LADDER": "1,1,1,1,1",
        }
    )


@pytest.mark.parametrize("transport", ["sasl_ssl", "mtls"])
async def test_the_pipeline_delivers_through_a_secured_broker(
    secured: SecuredBroker, transport: str, tmp_path: Path
) -> None:
    env = deployment(sasl_env(secured) if transport == "sasl_ssl" else mtls_env(secured))
    settings = settings_mod.load(env)
    try:
        done, hits = await _deliver_one(env, settings, tmp_path)
    finally:
        await drop_schema(settings)
    assert [(a["attempt_number"], a["status_code"]) for a in done["delivery_attempts"]] == [
        (1, 503),
        (2, 200),
    ]
    assert [orjson.loads(hit.body) for hit in hits] == [{"order": 42}] * 2


async def _deliver_one(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> tuple[dict[str, Any], list[Hit]]:
    """Catalogue and migrations with ``webhookmaster init``, then one webhook from the HTTP API
    to a receiver that fails once: its final status, and what the receiver got."""
    init = run_cli(env, "init")  # catalogue (admin client) and migrations, over the listener
    assert init.returncode == 0, init.stderr
    receiver = await Receiver().start()
    receiver.script("/flaky", Reply(503, "not yet"))
    agent = ComponentProcess("agent", settings, tmp_path / "agent.log")
    try:
        agent.start()
        await agent.wait_ready(WAIT)
        # gateway, scheduler (and an in-process agent) and projector on the same listener
        async with full_pipeline(settings) as gateway:
            sub = await gateway.create_subscription(target_url=receiver.url("/flaky"))
            reply = await gateway.ingest(sub, orjson.dumps({"order": 42}), event_type="a.b")
            assert reply.status == 202, reply.body
            done = await status_of(
                gateway, reply.json["id"], lambda body: body["status"] == "DELIVERED"
            )
        assert await agent.terminate() == 0
    finally:
        agent.ensure_stopped()
        await receiver.stop()
    return done, receiver.on("/flaky")


async def test_scram_sha_256_and_plain_users_answer(secured: SecuredBroker) -> None:
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        settings = settings_mod.load(deployment(sasl_env(secured, mechanism)))
        await asyncio.to_thread(kafka_clients.check_cluster, settings, 60.0)


def _start_agent(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    run = run_cli({**env, "WM_KAFKA_CHECK_TIMEOUT": "600"}, "agent", timeout=EXIT_BOUND_S)
    return run, time.monotonic() - began


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "wrong password",
            "webhookmaster: error: Kafka: authentication failed (SASL SCRAM-SHA-512 as 'alice') "
            "at 127.0.0.1:",
        ),
        ("untrusted broker certificate", "webhookmaster: error: Kafka: TLS failed (SSL) at "),
    ],
)
def test_wrong_credentials_stop_a_component_with_one_line(
    secured: SecuredBroker, case: str, expected: str
) -> None:
    if case == "wrong password":
        wrong = secured.folder / "pki" / "wrong-password"
        wrong.write_text("not-the-password\n")
        kafka = {**sasl_env(secured), "WM_KAFKA_SASL_PASSWORD_FILE": str(wrong)}
    else:
        kafka = {
            "WM_KAFKA_BOOTSTRAP": f"localhost:{secured.ssl_port}",
            "WM_KAFKA_SECURITY_PROTOCOL": "SSL",
            "WM_KAFKA_SSL_CA_FILE": str(secured.pki.other_ca_file),
        }
    run, _ = _start_agent(deployment(kafka))  # bounded by EXIT_BOUND_S, the check's is 600 s
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), run.stderr
    assert PASSWORD not in run.stderr
