"""Benchmark receiver process: answers every POST (200, or 500 for the first ``--fail-first``
attempts of each webhook id; ``--delay S`` seconds late: a slow endpoint) and records arrivals;
``GET /stats`` returns them. A body with an ``"ev"`` member (a fan-out event's key, set by the
sender) is also counted per event: ``GET /events`` returns, for each, its ``"t"`` (sent), first
and last arrival and the number of distinct ``webhook-id`` headers that arrived for it.

Run: ``python -m bench.receiver --port P [--fail-first N] [--delay S]``. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict

import orjson
from aiohttp import web


def build_app(fail_first: int, delay_s: float = 0.0) -> web.Application:
    arrivals: list[tuple[str, float, float]] = []  # (webhook id, arrival, payload "t")
    seen: defaultdict[str, int] = defaultdict(int)
    events: dict[str, list[float]] = {}  # ev -> [sent, first arrival, last arrival, distinct]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        webhook_id = request.headers.get("webhook-id", "")
        seen[webhook_id] += 1
        event = None
        try:
            data = orjson.loads(body)
            sent = float(data.get("t", 0.0))
            event = data.get("ev")
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            sent = 0.0
        arrivals.append((webhook_id, now, sent))
        if isinstance(event, str):
            entry = events.setdefault(event, [sent, now, now, 0])
            entry[2] = now
            if seen[webhook_id] == 1:
                entry[3] += 1
        if delay_s:
            await asyncio.sleep(delay_s)
        if seen[webhook_id] <= fail_first:
            return web.Response(status=500, text="fail")
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"arrivals": arrivals}), content_type="application/json"
        )

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": len(arrivals), "unique": len(seen)})

    async def per_event(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(events), content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        seen.clear()
        events.clear()
        return web.Response(text="reset")

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count)
    app.router.add_get("/events", per_event)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", hook)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(
        build_app(args.fail_first, args.delay),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
