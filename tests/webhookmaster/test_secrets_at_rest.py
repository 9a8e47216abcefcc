"""Subscription secrets at rest: encrypted on the compacted topic, rewritten at the gateway's
start when in plain text or under an older key, the key ring and its settings, the local stack's
key file and folder modes. Against the real broker where a topic is involved."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import uuid
from pathlib import Path

import msgspec
import orjson
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client import REGISTRY
from standardwebhooks.webhooks import Webhook

from devstack import kafka_broker, local, postgres_server
from ingest_gateway import subscriptions_api
from ingest_gateway.app import TABLE_LOADER
from ingest_gateway.state import GATEWAY
from schemas import records
from schemas.topics import SUBSCRIPTIONS
from tests.support.env import clean_env
from tests.support.gateway import running_gateway
from tests.support.pipeline import create_subscription, running
from tests.support.processes import run_cli
from tests.support.receiver import Receiver
from tests.support.records import produce
from tests.support.topics import read_to_end
from tests.support.waiting import eventually
from webhookmaster import secret_box, signing
from webhookmaster.kafka_clients import admin_client
from webhookmaster.secret_box import InvalidToken, SecretBox, SecretKeyError
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import Subscription, SubscriptionTable

WAIT = 60.0


# --- the key ring ---------------------------------------------------------------------------


def test_encrypts_under_the_first_key_and_decrypts_under_any() -> None:
    key_a, key_b = secret_box.new_key(), secret_box.new_key()
    token_a = SecretBox([key_a]).encrypt("whsec_abc")
    assert "whsec_abc" not in token_a
    ring = SecretBox([key_b, key_a])
    assert ring.decrypt(token_a) == ("whsec_abc", False)  # readable, but under an older key
    token_b = ring.encrypt("whsec_abc")
    assert ring.decrypt(token_b) == ("whsec_abc", True)
    assert SecretBox([key_b]).decrypt(token_b) == ("whsec_abc", True)
    with pytest.raises(InvalidToken):
        SecretBox([key_b]).decrypt(token_a)
    tampered = token_b[:-8] + ("A" if token_b[-8] != "A" else "B") + token_b[-7:]
    with pytest.raises(InvalidToken):
        ring.decrypt(tampered)
    assert ring.encrypt("x") != ring.encrypt("x")  # a fresh IV every time


def _settings(**values: str) -> Settings:
    return Settings(**values)


def test_keys_from_the_setting_or_a_file(tmp_path: Path) -> None:
    key_a, key_b = secret_box.new_key(), secret_box.new_key()
    assert secret_box.read_keys(_settings(secret_keys=f" {key_b} , {key_a},")) == [key_b, key_a]
    key_file = tmp_path / "keys"
    key_file.write_text(f"# newest first\n{key_b}\n\n{key_a}\n")
    assert secret_box.read_keys(_settings(secret_keys_file=str(key_file))) == [key_b, key_a]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({}, ["no key", "webhookmaster secret-key", "WM_SECRET_KEYS"]),
        ({"secret_keys": " , "}, ["no key", "webhookmaster secret-key"]),
        ({"secret_keys_file": "/nonexistent/keys"}, ["WM_SECRET_KEYS_FILE", "cannot read"]),
        ({"secret_keys": "not-a-key"}, ["not a Fernet key", "webhookmaster secret-key"]),
        ({"secret_keys": "k", "secret_keys_file": "/k"}, ["not both"]),
    ],
)
def test_unusable_key_settings_say_what_to_do(values: dict[str, str], words: list[str]) -> None:
    with pytest.raises(SecretKeyError) as info:
        secret_box.from_settings(_settings(**values))
    for word in words:
        assert word in str(info.value)
    assert "not-a-key" not in str(info.value)  # a key is never echoed


def test_empty_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# nothing yet\n")
    with pytest.raises(SecretKeyError, match="holds no key"):
        secret_box.from_settings(_settings(secret_keys_file=str(key_file)))


def test_stored_record_has_no_plain_secret_and_says_when_to_rewrite() -> None:
    key_a, key_b = secret_box.new_key(), secret_box.new_key()
    now = records.now_iso()
    sub = Subscription(
        str(uuid.uuid4()), "https://example.com/", "whsec_xyz", ("a",), True, now, now
    )
    stored = sub.to_stored(SecretBox([key_a]))
    assert "secret_key" not in stored and b"whsec_xyz" not in records.dumps(stored)
    assert Subscription.from_stored(stored, SecretBox([key_a])) == (sub, True)
    assert Subscription.from_stored(stored, SecretBox([key_b, key_a])) == (sub, False)
    plain = {**sub.to_record()}
    assert Subscription.from_stored(plain, SecretBox([key_a])) == (sub, False)
    both = {**stored, "secret_key": "whsec_xyz"}
    assert Subscription.from_stored(both, SecretBox([key_a])) == (sub, False)
    with pytest.raises(InvalidToken):
        Subscription.from_stored(stored, SecretBox([key_b]))


# --- the CLI and the local stack ------------------------------------------------------------


def test_secret_key_command_prints_a_usable_key() -> None:
    result = run_cli(clean_env(), "secret-key", timeout=60)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    box = SecretBox([key])
    assert box.decrypt(box.encrypt("s")) == ("s", True)
    assert run_cli(clean_env(), "secret-key", timeout=60).stdout.strip() != key


@pytest.mark.parametrize("component", ["gateway", "agent"])
def test_component_without_a_key_refuses_to_start_with_one_line(component: str) -> None:
    env = clean_env(WM_KAFKA_BOOTSTRAP="127.0.0.1:9")  # nothing is contacted before the check
    env.pop("WM_SECRET_KEYS_FILE")
    result = run_cli(env, component, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("webhookmaster: error: no key to encrypt subscription secrets")
    assert "webhookmaster secret-key" in lines[0] and "WM_SECRET_KEYS_FILE" in lines[0]


def test_local_stack_makes_its_key_file_once_0600(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path / "state"), database_url="postgresql://x/y")
    first = local.local_defaults(settings, env={})
    key_file = Path(first.secret_keys_file)
    assert key_file.parent == settings.state_path
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.state_path.stat().st_mode) == 0o700
    key = key_file.read_text().strip()
    assert secret_box.read_keys(first) == [key]
    key_file.chmod(0o644)
    again = local.local_defaults(settings, env={})
    assert again.secret_keys_file == first.secret_keys_file
    assert key_file.read_text().strip() == key  # kept, not replaced
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # a key the user set wins; no file is made for it
    own = local.local_defaults(
        Settings(state_dir=str(tmp_path / "own")), env={"WM_SECRET_KEYS": secret_box.new_key()}
    )
    assert own.secret_keys_file == "" and not (tmp_path / "own" / "secret-keys").exists()


def test_stack_folders_are_private(base_settings: Settings) -> None:
    """The session's stack (started by the stack code): data folders 0700, the key file 0600."""

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    kafka = kafka_broker.paths(base_settings)
    pg = postgres_server.paths(base_settings)
    for folder in (kafka["base"], kafka["data"], pg["base"], pg["data"]):
        assert mode(folder) == 0o700, folder
    state = base_settings.state_path
    if os.geteuid() == 0:  # the cluster's postgres user must pass through: its group may enter
        assert mode(state) == 0o710
        assert state.stat().st_gid == postgres_server.server_group()
    else:
        assert mode(state) == 0o700
    assert mode(Path(base_settings.secret_keys_file)) == 0o600
    assert Path(base_settings.secret_keys_file).parent == state


# --- on the real broker ---------------------------------------------------------------------


def topic_records(settings: Settings) -> list[tuple[str | None, bytes | None, int]]:
    """Every record the subscriptions topic holds now (key, value, offset), read raw from the
    start as kafka-console-consumer would."""
    return [
        (msg.key().decode() if msg.key() is not None else None, msg.value(), msg.offset())
        for msg in read_to_end(settings, settings.topic(SUBSCRIPTIONS), timeout=30)
    ]


def latest(settings: Settings, sub_id: str) -> dict:
    values = [v for k, v, _ in topic_records(settings) if k == sub_id]
    return orjson.loads(values[-1])


def compact_fast(settings: Settings) -> None:
    """Let the broker's cleaner compact the test topic within seconds: tiny segments, any dirt."""
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        settings.topic(SUBSCRIPTIONS),
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in (("segment.ms", "100"), ("min.cleanable.dirty.ratio", "0.01"))
        ],
    )
    admin = admin_client(settings)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def roll_segment(settings: Settings) -> None:
    """Append a tombstone for an unused key: the append rolls the segment once segment.ms has
    passed, which makes the records before it cleanable."""
    produce(settings, [(SUBSCRIPTIONS, str(uuid.uuid4()), None)])


def encrypted(value: dict) -> bool:
    return "secret_key" not in value and value["secret_key_encrypted"].startswith("gAAAAA")


async def test_plain_records_are_rewritten_at_gateway_start_and_still_verify(
    wm_settings: Settings,
) -> None:
    settings = dataclasses.replace(wm_settings, allowed_cidrs="127.0.0.0/8")
    box = secret_box.from_settings(settings)
    await asyncio.to_thread(compact_fast, settings)
    receiver = await Receiver().start()
    try:
        # written the old way: the secret in plain text
        secrets = {
            create_subscription(
                settings, receiver.url(f"/hook{i}"), secret=signing.new_secret()
            ): None
            for i in range(3)
        }
        unsigned = create_subscription(settings, receiver.url("/unsigned"), secret="")
        plain = {k: orjson.loads(v) for k, v, _ in await asyncio.to_thread(topic_records, settings)}
        for sub_id in secrets:
            secrets[sub_id] = plain[sub_id]["secret_key"]
            assert secrets[sub_id].startswith("whsec_")

        async with running_gateway(settings) as gw:

            async def rewritten() -> bool:
                values = await asyncio.to_thread(
                    lambda: {k: orjson.loads(v) for k, v, _ in topic_records(settings)}
                )
                return all(encrypted(values[s]) for s in [*secrets, unsigned])

            assert await eventually(rewritten, timeout=WAIT)
            for sub_id, secret in secrets.items():
                got = await gw.call("GET", f"/api/subscriptions/{sub_id}/")
                assert got.status == 200 and got.json["secret_key"] == secret
                value = await asyncio.to_thread(latest, settings, sub_id)
                assert box.decrypt(value["secret_key_encrypted"]) == (secret, True)
                assert {k: value[k] for k in ("target_url", "created_at", "updated_at")} == {
                    k: plain[sub_id][k] for k in ("target_url", "created_at", "updated_at")
                }
            value = await asyncio.to_thread(latest, settings, unsigned)
            assert box.decrypt(value["secret_key_encrypted"]) == ("", True)

            # deliveries are signed with the same secrets as before the rewrite
            async with running(settings):
                for i, sub_id in enumerate(secrets):
                    body = orjson.dumps({"n": i})
                    reply = await gw.ingest({"id": sub_id, "secret_key": secrets[sub_id]}, body)
                    assert reply.status == 202, reply.body
                assert await receiver.wait_for(lambda: len(receiver.hits) == len(secrets), WAIT)
        for i, sub_id in enumerate(secrets):
            [hit] = receiver.on(f"/hook{i}")
            Webhook(secrets[sub_id]).verify(
                hit.body, {k.lower(): v for k, v in hit.headers.items()}
            )
            assert signing.hub_signature_valid(
                secrets[sub_id], hit.body, hit.headers["X-Hub-Signature-256"]
            )
    finally:
        await receiver.stop()

    # once the broker has compacted the topic, no plain secret is left anywhere in it
    def plain_left() -> bool:
        roll_segment(settings)
        raw = b"".join((v or b"") + (k or "").encode() for k, v, _ in topic_records(settings))
        return b"whsec_" in raw or any(s[6:].encode() in raw for s in secrets.values())

    async def compacted() -> bool:
        return not await asyncio.to_thread(plain_left)

    assert await eventually(compacted, timeout=120, interval=1), "the topic was not compacted"
    values = {
        k: orjson.loads(v)
        for k, v, _ in await asyncio.to_thread(topic_records, settings)
        if v is not None
    }
    assert {*secrets, unsigned} <= set(values)
    assert all(encrypted(values[s]) for s in [*secrets, unsigned])


def skipped(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "webhookmaster_subscription_records_skipped_total", {"reason": reason}
        )
        or 0.0
    )


async def test_rotation_old_key_still_reads_and_records_move_to_the_new_key(
    wm_settings: Settings,
) -> None:
    key_a, key_b = secret_box.new_key(), secret_box.new_key()
    under_a = dataclasses.replace(wm_settings, secret_keys=key_a, secret_keys_file="")
    async with running_gateway(under_a) as gw:
        sub = await gw.create_subscription(secret_key="rotate-me")
    first = await asyncio.to_thread(latest, under_a, sub["id"])
    assert SecretBox([key_a]).decrypt(first["secret_key_encrypted"]) == ("rotate-me", True)

    rotated = dataclasses.replace(under_a, secret_keys=f"{key_b},{key_a}")
    async with running_gateway(rotated) as gw:
        got = await gw.call("GET", f"/api/subscriptions/{sub['id']}/")
        assert got.status == 200 and got.json == sub  # read under the old key at once

        async def under_b() -> bool:
            value = await asyncio.to_thread(latest, rotated, sub["id"])
            try:
                return SecretBox([key_b]).decrypt(value["secret_key_encrypted"]) == (
                    "rotate-me",
                    True,
                )
            except InvalidToken:
                return False

        assert await eventually(under_b, timeout=WAIT)
        assert gw.app[GATEWAY].table.stale() == []

    # with the old key retired, a reader skips (and counts) the old record, uses the new one
    before = skipped("undecryptable")
    table = SubscriptionTable(dataclasses.replace(under_a, secret_keys=key_b))
    try:
        await asyncio.to_thread(table.start)
        assert await asyncio.to_thread(table.wait_loaded, WAIT)
        current = table.get(sub["id"])
        assert current is not None and current.secret_key == "rotate-me"
    finally:
        await asyncio.to_thread(table.close)
    assert skipped("undecryptable") == before + 1


async def test_record_under_an_unknown_key_is_skipped_and_the_table_goes_on(
    wm_settings: Settings,
) -> None:
    stranger = SecretBox([secret_box.new_key()])
    now = records.now_iso()
    alien = Subscription(
        str(uuid.uuid4()), "https://example.com/a", "whsec_alien", (), True, now, now
    )
    produce(wm_settings, [(SUBSCRIPTIONS, alien.id, records.dumps(alien.to_stored(stranger)))])
    before = skipped("undecryptable")
    table = SubscriptionTable(wm_settings)
    try:
        await asyncio.to_thread(table.start)
        assert await asyncio.to_thread(table.wait_loaded, WAIT)
        assert table.get(alien.id) is None
        assert skipped("undecryptable") == before + 1
        # the follower thread is alive and keeps applying later records
        good = create_subscription(wm_settings, "https://example.com/good", secret="whsec_ok")

        async def applied() -> bool:
            return table.get(good) is not None

        assert await eventually(applied, timeout=WAIT)
        assert table.get(good).secret_key == "whsec_ok"
        assert [sub_id for sub_id, _ in table.stale()] == [good]  # plain text: to rewrite
    finally:
        await asyncio.to_thread(table.close)


async def test_start_up_rewrite_skips_an_entry_written_meanwhile(wm_settings: Settings) -> None:
    """The rewrite waits for the subscription's write lock and then leaves alone an entry that
    a newer write replaced meanwhile (else it would put the older version back)."""
    raced = create_subscription(wm_settings, "https://example.com/old", secret="whsec_raced")
    other = create_subscription(wm_settings, "https://example.com/other", secret="whsec_other")
    lock = asyncio.Lock()
    await lock.acquire()  # an API write to `raced` in progress, from before the gateway's start

    def hold(app) -> None:
        app[GATEWAY].write_locks[raced] = lock

    async with running_gateway(wm_settings, configure=hold) as gw:
        state = gw.app[GATEWAY]
        stale = dict(state.table.stale())
        assert set(stale) == {raced, other}
        current = state.table.get(raced)
        newer = msgspec.structs.replace(
            current, target_url="https://example.com/new", updated_at=records.now_iso()
        )
        await subscriptions_api.write(state, newer)  # the write that held the lock
        lock.release()
        await asyncio.wait_for(asyncio.shield(gw.app[TABLE_LOADER]), WAIT)  # the pass is over
        assert state.table.get(raced) == newer
        got = await gw.call("GET", f"/api/subscriptions/{raced}/")
        assert got.json["target_url"] == "https://example.com/new"
    values = {}
    for key, value, _ in await asyncio.to_thread(topic_records, wm_settings):
        values.setdefault(key, []).append(orjson.loads(value))
    assert [v["target_url"] for v in values[raced]] == [
        "https://example.com/old",
        "https://example.com/new",
    ]
    assert encrypted(values[other][-1]) and len(values[other]) == 2  # the pass went on
