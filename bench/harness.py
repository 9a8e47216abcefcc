"""Plumbing shared by the scenarios: the benchmark stack, processes, producing, waiting."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from devstack import local
from schemas import records
from schemas.topics import INGEST, SUBSCRIPTIONS
from webhookmaster import settings as settings_mod
from webhookmaster import signing
from webhookmaster.components import BY_NAME
from webhookmaster.kafka_clients import PARTITIONER, client_config
from webhookmaster.ops import topics_admin
from webhookmaster.settings import PROJECT_ROOT, Settings, to_env

BENCH_ENV = {
    "WM_STATE_DIR": str(PROJECT_ROOT / ".wm-state" / "bench"),
    "WM_KAFKA_PORT": "18092",
    "WM_KAFKA_CONTROLLER_PORT": "18093",
    "WM_PG_PORT": "18432",
    "WM_TOPIC_PARTITIONS": "6",
    "WM_LOG_LEVEL": "WARNING",
}
# The bench's own conditions: loopback receivers, load generators without an API key. Only a
# WM_BENCH_* variable changes these.
BENCH_FIXED = {"WM_ALLOWED_CIDRS": "127.0.0.0/8", "WM_API_KEYS": ""}
BENCH_PREFIX = "WM_BENCH_"
PAD = "x" * 900
LOGS = PROJECT_ROOT / "bench" / "results" / "logs"
# the components' code: what a baseline checkout differs in
CODE_DIRS = (
    "ingest_gateway",
    "delivery_agents",
    "retry_scheduler",
    "status_projector",
    "schemas",
    "webhookmaster",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings environment of a bench run: :data:`BENCH_ENV` as defaults, overridden by
    the caller's ``WM_*`` (ports, state directory, bootstrap, ...; not :data:`BENCH_FIXED`),
    overridden by ``WM_BENCH_<NAME>`` (for ``WM_<NAME>``), so a bench can run beside a
    running stack on ports of its own or against another stack."""
    bench_vars = {k for k in environ if k.startswith(BENCH_PREFIX)}
    out = {k: v for k, v in environ.items() if k not in bench_vars}
    for key, value in BENCH_ENV.items():
        out.setdefault(key, value)
    out.update(BENCH_FIXED)
    for key in bench_vars:
        out["WM_" + key.removeprefix(BENCH_PREFIX)] = environ[key]
    return out


def base_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = bench_env(os.environ if environ is None else environ)
    settings = settings_mod.load(env)
    local.start_infra(settings)
    # the local stack's own secret key file (gateway and agents need a key)
    return local.local_defaults(settings, env)


def fresh(settings: Settings, **changes: Any) -> Settings:
    """Settings with a new topic prefix (topics created) for one scenario."""
    tagged = dataclasses.replace(settings, topic_prefix=f"b{uuid.uuid4().hex[:8]}.", **changes)
    topics_admin.ensure_topics(tagged)
    return tagged


class Proc:
    """A child process of the benchmark, with its log and its peak RSS."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path = PROJECT_ROOT,
    ) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log = LOGS / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.started = time.monotonic()
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
            )

    def rss_mb(self, field: str = "VmRSS") -> float:
        """``field`` of /proc/PID/status (VmRSS now, VmHWM the peak) in MB; NaN once gone."""
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def peak_rss_mb(self) -> float:
        return self.rss_mb("VmHWM")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def component(
    name: str, settings: Settings, port_var: str, tree: Path = PROJECT_ROOT, **extra: str
) -> tuple[Proc, int]:
    """Run component ``name`` on a free port (``port_var``), from ``tree`` (another checkout,
    e.g. a baseline's: its working directory comes first on ``sys.path``)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WM_")},
        **to_env(settings),
        port_var: str(port),
        **extra,
    }
    return Proc(name, [sys.executable, "-m", "webhookmaster", name], env, cwd=tree), port


def apply_topics(settings: Settings, tree: Path) -> None:
    """Apply ``tree``'s topic catalogue (``webhookmaster topics apply`` run from it) to the
    settings' prefix: a baseline's components may need topics this tree does not have, or the
    other way round."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WM_")},
        **to_env(settings),
    }
    subprocess.run(
        [sys.executable, "-m", "webhookmaster", "topics", "apply"],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        timeout=120,
    )


def registered(name: str, settings: Settings, tree: Path = PROJECT_ROOT) -> tuple[Proc, int]:
    """Run the registered component ``name`` (its port setting from the components registry)."""
    return component(name, settings, BY_NAME[name].port_env, tree)


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path | None]:
    """A checkout of git ``ref`` (``git archive``) in a temporary directory, to run a baseline's
    components from; None when ``ref`` is empty or its components' code is this tree's (no
    baseline to compare with)."""
    if not ref or same_code(ref):
        yield None
        return
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="wm-baseline-") as base:
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        yield Path(base)


def git_commit(ref: str = "HEAD") -> str:
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def same_code(ref: str) -> bool:
    """Whether the components' code at ``ref`` is this tree's (committed or not)."""
    diff = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "diff", "--quiet", ref, "--", *CODE_DIRS],
        check=False,
    )
    return diff.returncode == 0


def module(name: str, *args: str) -> Proc:
    return Proc(name, [sys.executable, "-m", f"bench.{name}", *args])


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


def wait_http(url: str, timeout: float = 60, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout} s")


def wait_count(receiver_port: int, target: int, timeout: float, key: str = "unique") -> float:
    """Poll the receiver until ``key`` reaches ``target``; returns the time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_json(f"http://127.0.0.1:{receiver_port}/count")[key] >= target:
            return time.time()
        time.sleep(0.05)
    raise TimeoutError(f"receiver saw fewer than {target} within {timeout} s")


def create_subscriptions(
    settings: Settings, urls: list[str], secret: str = "", **fields: Any
) -> list[str]:
    producer = Producer(client_config(settings, {"acks": "all", "partitioner": PARTITIONER}))
    ids = []
    for url in urls:
        sub_id = str(uuid.uuid4())
        now = records.now_iso()
        producer.produce(
            settings.topic(SUBSCRIPTIONS),
            orjson.dumps(
                {
                    "id": sub_id,
                    "target_url": url,
                    "secret_key": secret or signing.new_secret(),
                    "event_types": [],
                    "is_active": True,
                    "created_at": now,
                    "updated_at": now,
                    **fields,
                }
            ),
            sub_id,
        )
        ids.append(sub_id)
    assert producer.flush(30) == 0
    return ids


def webhook_producer(settings: Settings) -> Producer:
    return Producer(
        client_config(
            settings,
            {
                "partitioner": PARTITIONER,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
            },
        )
    )


def produce_webhooks(
    settings: Settings,
    sub_ids: list[str],
    count: int,
    producer: Producer | None = None,
    ordering_keys: int = 0,
) -> float:
    """Produce ``count`` ingest records round-robin over ``sub_ids``; returns records/s. With
    ``producer``, it is left unflushed (the caller flushes). ``ordering_keys``: so many ordering
    keys, round-robin (0: none)."""
    own = producer is None
    producer = webhook_producer(settings) if producer is None else producer
    topic = settings.topic(INGEST)
    started = time.perf_counter()
    for i in range(count):
        sub = sub_ids[i % len(sub_ids)]
        hook = records.Webhook(
            webhook_id=str(uuid.uuid4()),
            subscription_id=sub,
            event_type="bench",
            received_at=records.now_iso(),
            body=orjson.dumps({"i": i, "t": time.time(), "pad": PAD}),
            metadata=b'{"source": "bench"}',
            ordering_key=f"k{i % ordering_keys}" if ordering_keys else None,
        )
        while True:
            try:
                producer.produce(topic, hook.body, sub, headers=hook.headers())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if own:
        assert producer.flush(60) == 0
    return count / (time.perf_counter() - started)


def percentiles(values: list[float], points=(50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{p}": float("nan") for p in points} | {"max": float("nan")}
    ordered = sorted(values)
    out = {f"p{p}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in points}
    out["max"] = ordered[-1]
    return out


def read_topic(
    settings: Settings,
    suffix: str,
    count: int,
    timeout: float = 60,
    match: Callable[[dict], bool] | None = None,
) -> list[dict]:
    """The first ``count`` JSON records of a topic (for which ``match(record)`` holds, when
    given), read with a fresh consumer group within ``timeout``."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        client_config(
            settings,
            {
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([settings.topic(suffix)])
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    record = orjson.loads(msg.value())
                    if match is None or match(record):
                        out.append(record)
    finally:
        consumer.close()
    return out[:count]
