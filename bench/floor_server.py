"""The ingest floor: a bare aiohttp handler that reads the body and answers 202, nothing else.

Run: ``python -m bench.floor_server --port P``. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": "floor", "status": "accepted"}, status=202)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", accept)
    app.router.add_get("/readyz", lambda request: web.json_response({"status": "ready"}))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
