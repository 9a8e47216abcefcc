"""``webhookmaster deadletters list|redrive``: the dead-letter routes of the gateway's HTTP API
(``GET /api/deadletters/``, ``POST /api/deadletters/redrive/``), called with the management API
key. Through the API, not the database: a redrive produces new delivery chains, which only the
gateway does (one implementation, Kafka's acknowledgement awaited, the key checked)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from webhookmaster.ops.errors import CommandError
from webhookmaster.settings import Settings

TIMEOUT_S = 120.0  # a large redrive waits for every record's acknowledgement


def add_parser(sub: Any, handler: Any) -> None:
    """The ``deadletters`` subcommand on ``sub`` (argparse subparsers)."""
    parser = sub.add_parser("deadletters", help="list or redrive dead letters (gateway API)")
    parser.add_argument("action", choices=["list", "redrive"])
    parser.add_argument(
        "--url", help="gateway base URL (default: http://WM_GATEWAY_HOST:WM_GATEWAY_PORT)"
    )
    parser.add_argument(
        "--api-key",
        help="management API key (default: the first of WM_API_KEYS)",
    )
    parser.add_argument("--subscription-id", help="only this subscription's letters")
    parser.add_argument("--reason", help="only letters whose reason contains this text")
    parser.add_argument("--since", help="only letters that failed at or after (RFC 3339)")
    parser.add_argument("--until", help="only letters that failed before (RFC 3339)")
    parser.add_argument(
        "--id", type=int, action="append", dest="ids", help="redrive: this letter (repeatable)"
    )
    parser.add_argument("--limit", type=int, default=50, help="list: page size (1-200)")
    parser.add_argument("--all", action="store_true", help="list: every page, not only the first")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(handler=handler)


def run(settings: Settings, args: argparse.Namespace) -> int:
    client = Client(_base_url(settings, args.url), _api_key(settings, args.api_key))
    filters = {
        "subscription_id": args.subscription_id,
        "reason": args.reason,
        "since": args.since,
        "until": args.until,
    }
    filters = {k: v for k, v in filters.items() if v is not None}
    if args.action == "list":
        return _list(client, filters, args)
    body: dict[str, Any] = {"ids": args.ids} if args.ids else filters
    if not body:
        raise CommandError("redrive needs --id, or a filter (--subscription-id, --reason, ...)")
    result = client.call("POST", "/api/deadletters/redrive/", body=body)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"redriven: {result['count']}, refused: {result['refused']}")
    return 0


def _list(client: Client, filters: dict[str, str], args: argparse.Namespace) -> int:
    query: dict[str, str] = {**filters, "limit": str(args.limit)}
    while True:
        page = client.call("GET", "/api/deadletters/", query=query)
        if args.json:
            print(json.dumps(page))
        else:
            for item in page["items"]:
                print(_line(item))
        cursor = page["next_cursor"]
        if not args.all or cursor is None:
            if cursor is not None and not args.json:
                print(f"(more: --all, or the API with cursor={cursor})")
            return 0
        query["cursor"] = cursor


def _line(item: dict[str, Any]) -> str:
    """One letter as a line: id, time, webhook (or UNREADABLE and its raw text), reason."""
    if item["redrivable"]:
        what = f"webhook={item['webhook_id']} subscription={item['subscription_id']}"
    else:
        raw = (item["raw"] or "")[:80].replace("\n", " ")
        what = f"UNREADABLE raw={raw!r}"
    redriven = f" redriven_at={item['redriven_at']}" if item["redriven_at"] else ""
    return f"{item['id']}  {item['failed_at']}  {what}  reason={item['reason']!r}{redriven}"


class Client:
    """JSON calls to the gateway, with the API key; an error answer raises CommandError."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def call(
        self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(f"{method} {path}: HTTP {exc.code}: {_detail(exc)}") from None
        except urllib.error.URLError as exc:
            raise CommandError(
                f"cannot reach the gateway at {self.base_url}: {exc.reason}"
            ) from None


def _detail(exc: urllib.error.HTTPError) -> str:
    text = exc.read().decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('error')}: {body['detail']}"
    return text[:200]


def _base_url(settings: Settings, given: str | None) -> str:
    if given:
        return given
    host = settings.gateway_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway_port}"


def _api_key(settings: Settings, given: str | None) -> str | None:
    if given:
        return given
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    return keys[0] if keys else None
