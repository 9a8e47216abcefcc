"""The delivery limit: a bare aiohttp-client POST loop to the receiver at a fixed concurrency.

Run: ``python -m bench.bare_client --url URL --count N --concurrency C``; prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp
import orjson

PAD = "x" * 900


async def run(url: str, count: int, concurrency: int) -> dict:
    counter = iter(range(count))
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in counter:
            body = orjson.dumps({"i": i, "t": time.time(), "pad": PAD})
            async with session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "webhook-id": f"bare-{i}"},
            ) as resp:
                await resp.read()
                ok += resp.status == 200

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"count": count, "ok": ok, "elapsed": elapsed, "rate": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the agent does")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        sys.exit("bare_client only targets loopback addresses")
    main_coro = run(args.url, args.count, args.concurrency)
    if args.uvloop:
        import uvloop

        result = uvloop.run(main_coro)
    else:
        result = asyncio.run(main_coro)
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
