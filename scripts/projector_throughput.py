"""Rough throughput of the status projector: attempt events (with their ingest records) already
in the topics, one ``webhookmaster projector`` process, events written per second, for a few
batch sizes. Not a benchmark with floors (``make bench`` has the projection scenario); a quick
look on the machine at hand.

    WM_KAFKA_PORT=… WM_PG_PORT=… WM_STATE_DIR=… .venv/bin/python scripts/projector_throughput.py

It uses the stack those WM_* variables name (start it with ``webhookmaster stack up --infra``),
a fresh topic prefix and schema per run, and drops the schema afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
from confluent_kafka import Producer

from schemas import records
from webhookmaster import migrate, topics_admin
from webhookmaster import settings as settings_mod


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def produce(settings: settings_mod.Settings, webhooks: int) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap, "acks": "all",
                         "linger.ms": 5, "queue.buffering.max.messages": 500_000})
    sub = str(uuid.uuid4())
    now = records.now_iso()
    for i in range(webhooks):
        wid = str(uuid.uuid4())
        producer.produce(settings.topic_prefix + "ingest", orjson.dumps({
            "webhook_id": wid, "subscription_id": sub, "event_type": "bench",
            "payload": {"i": i, "pad": "x" * 200}, "received_at": now, "metadata": {}}), sub)
        producer.produce(settings.topic_prefix + "attempts", orjson.dumps({
            "webhook_id": wid, "subscription_id": sub, "event_type": "bench",
            "target_url": "http://127.0.0.1:9/", "attempt_number": 1, "started_at": now,
            "duration_ms": 1.0, "status_code": 200, "error": None, "response_excerpt": "ok",
            "outcome": "delivered", "next_attempt_at": None, "received_at": now}), wid)
        producer.poll(0)
    assert producer.flush(60) == 0


def projected(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("webhookmaster_projector_events_total{"))


def run_once(base: settings_mod.Settings, webhooks: int, batch: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(base, topic_prefix=f"p{tag}.", db_schema=f"p_{tag}")
    topics_admin.ensure_topics(settings)
    asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    produce(settings, webhooks)
    port = free_port()
    env = {**os.environ, **settings_mod.to_env(settings), "WM_PROJECTOR_PORT": str(port),
           "WM_PROJECTOR_BATCH_SIZE": str(batch), "WM_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "webhookmaster.cli", "projector"], env=env)
    try:
        first: tuple[float, float] | None = None
        last = (time.monotonic(), 0.0)
        while last[1] < 2 * webhooks:
            time.sleep(0.1)
            last = (time.monotonic(), projected(port))
            if first is None and last[1] > 0:
                first = last
        assert first is not None
        return {"batch": batch, "records": 2 * webhooks,
                "records_per_s": (last[1] - first[1]) / (last[0] - first[0]),
                "attempt_events_per_s": (last[1] - first[1]) / 2 / (last[0] - first[0])}
    finally:
        proc.terminate()
        proc.wait(30)
        asyncio.run(_drop(settings))


async def _drop(settings: settings_mod.Settings) -> None:
    conn = await asyncpg.connect(settings.dsn)
    await conn.execute(f"DROP SCHEMA {migrate.quote_ident(settings.db_schema)} CASCADE")
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="*", default=[100, 500, 2000])
    args = parser.parse_args()
    base = settings_mod.load()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}, {base.topic_partitions} partitions per topic, "
          f"{args.webhooks} webhooks (ingest + delivered attempt each)")
    for batch in args.batch:
        r = run_once(base, args.webhooks, batch)
        print(f"batch {batch:>5}: {r['records_per_s']:>8,.0f} records/s  "
              f"({r['attempt_events_per_s']:,.0f} attempt events/s with their ingest records)")


if __name__ == "__main__":
    main()
