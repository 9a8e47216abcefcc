"""``webhookmaster replay``: start a replay job on the gateway (``POST
/api/subscriptions/{id}/replay/``) and follow it (``GET /api/replays/{job}/``) with a progress
bar until it ends."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, TextIO

from webhookmaster.ops.errors import CommandError
from webhookmaster.settings import Settings

POLL_S = 0.5
BAR_WIDTH = 30
HTTP_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", required=True, help="subscription id")
    parser.add_argument("--since", required=True, help="start of the window (RFC 3339)")
    parser.add_argument("--until", help="end of the window (RFC 3339; default: now)")
    parser.add_argument(
        "--event-type",
        action="append",
        dest="event_types",
        help="only this event type (repeat for several)",
    )
    parser.add_argument(
        "--gateway", help="gateway URL (default: http://127.0.0.1:<WM_GATEWAY_PORT>)"
    )
    parser.add_argument(
        "--api-key",
        help="management API key (default: the first of WM_API_KEYS, else the local stack's)",
    )


def _api_key(settings: Settings, given: str | None) -> str | None:
    if given:
        return given
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if keys:
        return keys[0]
    local = settings.state_path / "api-key"
    return local.read_text().strip() if local.is_file() else None


def _call(url: str, key: str | None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", errors="replace")
        raise CommandError(f"{exc.code} from {url}: {text}") from None
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach the gateway at {url}: {exc.reason}") from None


def bar(job: dict[str, Any]) -> str:
    """One progress line: records read of the window, webhooks re-delivered."""
    total, scanned = job.get("total") or 0, job.get("scanned") or 0
    done = 1.0 if total == 0 or job.get("state") == "done" else min(1.0, scanned / total)
    filled = int(done * BAR_WIDTH)
    return (
        f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:4.0%}  {scanned}/{total} records "
        f"read, {job.get('count') or 0} re-delivered"
    )


def run(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stderr) -> int:
    base = (args.gateway or f"http://127.0.0.1:{settings.gateway_port}").rstrip("/")
    key = _api_key(settings, args.api_key)
    body: dict[str, Any] = {"since": args.since}
    if args.until:
        body["until"] = args.until
    if args.event_types:
        body["event_types"] = args.event_types
    started = _call(f"{base}/api/subscriptions/{args.subscription}/replay/", key, body)
    job_id = started["id"]
    print(f"replay job {job_id}: {started['total']} records in the window", file=out)
    while True:
        job = _call(f"{base}/api/replays/{job_id}/", key)
        print("\r" + bar(job), end="", file=out, flush=True)
        if job["state"] != "running":
            break
        time.sleep(POLL_S)
    print(file=out)
    if job["state"] == "failed":
        print(f"replay failed: {job['error']}", file=out)
        return 1
    print(f"done: {job['count']} webhook(s) re-delivered", file=sys.stdout)
    return 0
