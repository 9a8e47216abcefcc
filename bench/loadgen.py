"""Load generator process: POSTs signed ~1 KB JSON bodies to 127.0.0.1, closed loop (fixed
concurrency) or open loop (fixed offered rate), bounded in count and time. Prints one JSON object
with the results.

Run: ``python -m bench.loadgen --url URL --secret S (--concurrency N | --rate R) --seconds D``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from urllib.parse import urlsplit

import aiohttp
import orjson

from webhookmaster import signing

PAD = "x" * 900  # brings each body to about 1 KB
MAX_REQUESTS = 2_000_000  # hard bound, whatever the duration


def body(i: int, fanout: str = "", tag: str = "") -> bytes:
    """Request body ``i``; with ``fanout``, a ``POST /api/events/`` body of that event type whose
    payload carries the event's own key ``"ev"`` (``tag:i``) for the receiver to count by."""
    payload = {"i": i, "t": time.time(), "pad": PAD}
    if not fanout:
        return orjson.dumps(payload)
    return orjson.dumps({"event_type": fanout, "payload": {**payload, "ev": f"{tag}:{i}"}})


async def one(session: aiohttp.ClientSession, url: str, secret: str, i: int, out: dict) -> None:
    data = body(i, out["fanout"], out["tag"])
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Hub-Signature-256"] = signing.hub_signature(secret, data)
    started = time.perf_counter()
    try:
        async with session.post(url, data=data, headers=headers) as resp:
            payload = await resp.read()
            status = resp.status
    except aiohttp.ClientError as exc:
        out["errors"].append(type(exc).__name__)
        return
    out["latencies"].append(time.perf_counter() - started)
    out["finished"].append(time.time())
    if status == 202:
        out["accepted"] += 1
        if out["keep_ids"]:
            out["ids"].extend(_ids(payload))
    else:
        out["errors"].append(f"HTTP {status}")


def _ids(payload: bytes) -> list[str]:
    data = orjson.loads(payload)
    return [data["id"]] if "id" in data else list(data.get("ids", []))


async def closed_loop(
    url: str, secret: str, concurrency: int, seconds: float, out: dict, count: int = MAX_REQUESTS
) -> None:
    deadline = time.monotonic() + seconds
    counter = iter(range(min(count, MAX_REQUESTS)))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            if time.monotonic() >= deadline:
                return
            await one(session, url, secret, i, out)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


async def open_loop(url: str, secret: str, rate: float, seconds: float, out: dict) -> None:
    total = min(int(rate * seconds), MAX_REQUESTS)
    start = time.monotonic()
    tasks = set()
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load is the point here
            task = asyncio.create_task(one(session, url, secret, i, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--keep-ids", action="store_true")
    parser.add_argument("--count", type=int, default=MAX_REQUESTS, help="closed loop: at most")
    parser.add_argument("--fanout", default="", help="POST /api/events/ bodies of this type")
    parser.add_argument("--tag", default="", help="with --fanout: events are keyed TAG:i")
    args = parser.parse_args()
    host = urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadgen only targets loopback addresses")
    out: dict = {
        "latencies": [],
        "finished": [],
        "errors": [],
        "accepted": 0,
        "ids": [],
        "keep_ids": args.keep_ids,
        "fanout": args.fanout,
        "tag": args.tag,
    }
    started = time.time()
    if args.rate:
        asyncio.run(open_loop(args.url, args.secret, args.rate, args.seconds, out))
    else:
        asyncio.run(
            closed_loop(
                args.url, args.secret, args.concurrency or 32, args.seconds, out, args.count
            )
        )
    out["started"] = started
    out["elapsed"] = time.time() - started
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
