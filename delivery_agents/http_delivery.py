"""One HTTP attempt: sign the body, POST it, classify what came back."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from delivery_agents.ssrf import BlockedTarget, Network, check_host
from webhookmaster import __version__, signing
from webhookmaster.retry_ladder import parse_retry_after

USER_AGENT = f"WebhookMaster/{__version__}"
EXCERPT_BYTES = 4096
ATTEMPT_HEADER = "X-Webhook-Attempt"  # 1 for the first delivery attempt, then one per retry


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    duration_ms: float
    error: str | None
    excerpt: str | None
    retry_after_s: float | None = None
    retryable: bool = True

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def headers_for(
    webhook_id: str,
    event_type: str,
    secret: str,
    body: bytes,
    previous: str | None = None,
    attempt: int | None = None,
) -> dict[str, str]:
    """Request headers: content type, agent, event type, the attempt number (1-based) when
    given, and both signatures when there is a secret; ``previous`` (a rotated-out secret
    still valid) adds its Standard Webhooks signature after the current one
    (X-Hub-Signature-256 uses the current secret only)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "X-Webhook-Event-Type": event_type,
    }
    if attempt is not None:
        headers[ATTEMPT_HEADER] = str(attempt)
    timestamp = int(time.time())
    headers["webhook-timestamp"] = str(timestamp)
    if secret:
        headers["webhook-signature"] = (
            signing.standard_signatures((secret, previous), webhook_id, timestamp, body)
            if previous
            else signing.standard_signature(signing.key_bytes(secret), webhook_id, timestamp, body)
        )
        headers["X-Hub-Signature-256"] = signing.hub_signature(secret, body)
    return headers


@functools.lru_cache(maxsize=4096)
def _url(url: str) -> URL:
    """Parsed target URLs, kept: every delivery to a subscription uses the same one."""
    return URL(url)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    client_timeout: aiohttp.ClientTimeout,
    networks: list[Network],
) -> AttemptResult:
    """POST once; redirects are not followed (a 3xx is a failure)."""
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    try:
        target = _url(url)
        check_host(target.host or "", networks)
        async with session.post(
            target, data=body, headers=headers, allow_redirects=False, timeout=client_timeout
        ) as resp:
            chunk = await resp.content.read(EXCERPT_BYTES)
            if not resp.content.at_eof():
                resp.close()  # do not drain a large body; the connection is not reused
            excerpt = chunk.decode("utf-8", errors="replace")
            status = resp.status
            error = None if 200 <= status < 300 else f"HTTP {status}"
            if 300 <= status < 400:
                error = (
                    f"HTTP {status} redirect not followed (Location: "
                    f"{resp.headers.get('Location', '')})"
                )
            retry_after = (
                parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
            )
            return AttemptResult(status, elapsed(), error, excerpt, retry_after)
    except BlockedTarget as exc:
        return AttemptResult(None, elapsed(), str(exc), None, retryable=False)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, BlockedTarget):
            return AttemptResult(None, elapsed(), str(exc.os_error), None, retryable=False)
        return AttemptResult(None, elapsed(), f"connection failed: {exc.os_error}", None)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return AttemptResult(None, elapsed(), f"timed out after {client_timeout.total} s", None)
    except aiohttp.ClientError as exc:
        return AttemptResult(None, elapsed(), f"{type(exc).__name__}: {exc}", None)
    except ValueError as exc:  # a request aiohttp refuses to send (a header it cannot carry)
        return AttemptResult(None, elapsed(), f"request not sent: {exc}", None, retryable=False)
