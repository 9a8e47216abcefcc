"""Scenario: 100,000 subscriptions in a real gateway and a real agent (issue 13, items 1 and 2).

For this tree and for a baseline git ref (``--baseline``, extracted with ``git archive``, run
with the same Python), one after the other, each on topics of its own: loads N subscription
records (secrets encrypted, one event type each out of 1,000; ten of them take the fan-out
event type) into the subscriptions topic, then measures start time to ``/readyz``, RSS once
ready (and of a gateway and an agent with ten subscriptions: the floor, for the cost per
subscription), list latency (walking ``GET /api/subscriptions/`` pages of 50 with the cursor),
fan-out acknowledgement latency (``POST /api/events/`` to 10 subscribers) and ingest rate
alone and with four clients listing subscriptions meanwhile.

    .venv/bin/python -m bench.subscription_memory [--subscriptions 100000] [--baseline main]

The stack is the benchmark's (``bench/harness.py``); ``--kafka-port`` etc. move it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from bench import harness
from bench.harness import LOGS, fresh, percentiles, wait_http
from schemas import records
from schemas.topics import SUBSCRIPTIONS
from webhookmaster import secret_box
from webhookmaster.kafka_clients import client_config
from webhookmaster.settings import PROJECT_ROOT, Settings, to_env

FANOUT_TYPE = "bench.fanout"
FANOUT_WIDTH = 10
SECRET = "bench-secret"


def load(settings: Settings, count: int, receiver_port: int) -> str:
    """``count`` subscription records; returns the id of one whose secret is SECRET."""
    box = secret_box.from_settings(settings)
    producer = Producer(client_config(settings, {"acks": "all", "linger.ms": 20}))
    topic = settings.topic(SUBSCRIPTIONS)
    signed = ""
    for i in range(count):
        sub_id = str(uuid.uuid4())
        now = records.now_iso()
        secret = SECRET if i == 0 else f"whsec_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"
        signed = signed or sub_id
        value = orjson.dumps(
            {
                "id": sub_id,
                "target_url": f"http://127.0.0.1:{receiver_port}/hook/{i}",
                "secret_key_encrypted": box.encrypt(secret),
                "event_types": [FANOUT_TYPE if i < FANOUT_WIDTH else f"bench.type.{i % 1000}"],
                "is_active": True,
                "created_at": now,
                "updated_at": now,
            }
        )
        while True:
            try:
                producer.produce(topic, value, sub_id)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0
    return signed


class Component:
    """A gateway or agent process run from ``tree`` (its working directory comes first on
    ``sys.path``), with the environment of ``settings``."""

    def __init__(self, name: str, tree: Path, settings: Settings, port_var: str) -> None:
        self.port = harness.free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WM_")},
            **to_env(settings),
            port_var: str(self.port),
        }
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.started = time.monotonic()
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "webhookmaster", name],
                env=env,
                cwd=tree,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready_after(self) -> float:
        wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=600)
        return time.monotonic() - self.started

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def _timed(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> Any:
    started = time.perf_counter()
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - started
    assert resp.status in (200, 202), (resp.status, data[:300])
    return elapsed, json.loads(data)


def list_walk(port: int, requests: int, stop: threading.Event | None = None) -> list[float]:
    """Latencies of ``requests`` list pages (50 each), following the cursor, from the start
    again at the end; until ``stop`` is set when one is given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    cursor = None
    while (stop is None and len(latencies) < requests) or (stop is not None and not stop.is_set()):
        path = "/api/subscriptions/?limit=50" + (f"&cursor={cursor}" if cursor else "")
        elapsed, page = _timed(conn, "GET", path)
        latencies.append(elapsed)
        cursor = page["next_cursor"]
    conn.close()
    return latencies


def fan_out(port: int, requests: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for i in range(requests):
        body = orjson.dumps({"event_type": FANOUT_TYPE, "payload": {"i": i}})
        elapsed, answer = _timed(conn, "POST", "/api/events/", body)
        assert answer["status"] == "accepted", answer  # one record, expanded by the agents
        latencies.append(elapsed)
    conn.close()
    return latencies


def ingest_rate(port: int, sub_id: str, seconds: float) -> float:
    gen = harness.module(
        "loadgen",
        "--url",
        f"http://127.0.0.1:{port}/api/ingest/{sub_id}/?event_type={FANOUT_TYPE}",
        "--secret",
        SECRET,
        "--concurrency",
        "32",
        "--seconds",
        str(seconds),
    )
    gen.popen.wait(seconds + 120)
    text = gen.log.read_bytes()
    out = orjson.loads(text[text.index(b"{") :])
    return float(out["accepted"]) / float(out["elapsed"])


def measure(settings: Settings, tree: Path, sub_id: str, requests: int) -> dict[str, Any]:
    gateway = Component("gateway", tree, settings, "WM_GATEWAY_PORT")
    agent = Component("agent", tree, settings, "WM_AGENT_PORT")
    try:
        out: dict[str, Any] = {
            "tree": str(tree),
            "start_s": {"gateway": gateway.ready_after(), "agent": agent.ready_after()},
        }
        time.sleep(3)
        out["rss_ready_mb"] = {"gateway": gateway.rss_mb(), "agent": agent.rss_mb()}
        list_walk(gateway.port, 20)  # warm-up
        out["list_s"] = percentiles(list_walk(gateway.port, requests))
        out["fanout_ack_s"] = percentiles(fan_out(gateway.port, requests // 2))
        solo = ingest_rate(gateway.port, sub_id, 10)
        stop = threading.Event()
        listers = [
            threading.Thread(target=list_walk, args=(gateway.port, 0, stop)) for _ in range(4)
        ]
        for thread in listers:
            thread.start()
        try:
            busy = ingest_rate(gateway.port, sub_id, 10)
        finally:
            stop.set()
            for thread in listers:
                thread.join(120)
        out["ingest_per_s"] = {"solo": solo, "with_4_listers": busy, "ratio": busy / solo}
        out["rss_end_mb"] = {"gateway": gateway.rss_mb(), "agent": agent.rss_mb()}
        out["rss_peak_mb"] = {
            "gateway": gateway.rss_mb("VmHWM"),
            "agent": agent.rss_mb("VmHWM"),
        }
        return out
    finally:
        gateway.stop()
        agent.stop()


def floor_rss(settings: Settings, tree: Path) -> dict[str, float]:
    """RSS of a gateway and an agent from ``tree`` with only a few subscriptions, once ready:
    what a process costs before the table does."""
    gateway = Component("gateway", tree, settings, "WM_GATEWAY_PORT")
    agent = Component("agent", tree, settings, "WM_AGENT_PORT")
    try:
        gateway.ready_after(), agent.ready_after()
        time.sleep(3)
        return {"gateway": gateway.rss_mb(), "agent": agent.rss_mb()}
    finally:
        gateway.stop()
        agent.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--baseline", default="main", help="git ref to compare with ('': none)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--state-dir")
    parser.add_argument("--kafka-port")
    parser.add_argument("--controller-port")
    parser.add_argument("--pg-port")
    args = parser.parse_args()
    for var, value in (
        ("WM_STATE_DIR", args.state_dir),
        ("WM_KAFKA_PORT", args.kafka_port),
        ("WM_KAFKA_CONTROLLER_PORT", args.controller_port),
        ("WM_PG_PORT", args.pg_port),
    ):
        if value:
            harness.BENCH_ENV[var] = value
    base_settings = harness.base_settings()
    receiver_port = harness.free_port()
    receiver = harness.module("receiver", "--port", str(receiver_port))
    results: dict[str, Any] = {"subscriptions": args.subscriptions}
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", proc=receiver)
        with tempfile.TemporaryDirectory(prefix="wm-baseline-") as base:
            trees = {"after": PROJECT_ROOT}
            if args.baseline:
                archive = subprocess.run(
                    ["git", "-C", str(PROJECT_ROOT), "archive", args.baseline],
                    check=True,
                    capture_output=True,
                ).stdout
                subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
                trees = {"before": Path(base), **trees}
            for label, tree in trees.items():
                # topics of its own per tree: no agent resumes the deliveries of another's run
                settings = fresh(base_settings)
                started = time.monotonic()
                sub_id = load(settings, args.subscriptions, receiver_port)
                results.setdefault("load_s", time.monotonic() - started)
                results[label] = measure(settings, tree, sub_id, args.requests)
                floor = fresh(base_settings)
                load(floor, FANOUT_WIDTH, receiver_port)
                results[label]["rss_floor_mb"] = floor_rss(floor, tree)
                results[label]["kb_per_subscription"] = {
                    name: (results[label]["rss_ready_mb"][name] - mb) * 1024 / args.subscriptions
                    for name, mb in results[label]["rss_floor_mb"].items()
                }
                print(label, json.dumps(results[label], indent=1), flush=True)
    finally:
        receiver.stop()
    out = (
        PROJECT_ROOT / "bench" / "results" / f"subscriptions-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    out.write_text(json.dumps(results, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
