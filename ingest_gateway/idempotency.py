"""Ids that make ingest idempotent: a fan-out's producer-given ``event_id`` and the
``Idempotency-Key`` header, and the gateway's best-effort memory of keys it answered.

The guarantee lives in the pipeline, not here: a repeated key (or event id) gives the same
webhook id, produced with the idempotency marker, and the agent that owns the subscription's
partition drops every copy after the first (delivery_agents/dedupe.py). This module makes the
ids and tells, best effort, whether a request replays one already accepted (this process's
memory, or the status view): then nothing is produced again and the answer carries
``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict

import asyncpg

from ingest_gateway.errors import validation_error
from schemas import records

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MAX_EVENT_ID_LENGTH = 200
# A fan-out's event id: it names the event in URLs (GET /api/events/{event_id}/).
EVENT_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:~-]{0,199}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN[:-1] + r"(?![\s\S])")
EVENTS_SCOPE = "events"  # an Idempotency-Key on POST /api/events/
SEEN_CAPACITY = 100_000  # keys one gateway process remembers (about 0.2 KB each)
DB_CHECK_S = 0.5  # longest wait for the status view's answer
_PROJECTED = """
SELECT EXISTS (SELECT 1 FROM webhooks
               WHERE id = $1 AND created_at > now() - $2 * interval '1 millisecond')
"""
log = logging.getLogger(__name__)


def event_id(value: object) -> str:
    """A producer-given event id, checked (400 naming ``event_id`` when it cannot be one)."""
    if not isinstance(value, str) or not _EVENT_ID.match(value):
        raise validation_error(
            "event_id must be 1-200 characters: letters, digits and . _ : ~ - "
            "(starting with a letter or digit)",
            "event_id",
        )
    return value


def key(raw: str | None) -> str | None:
    """The ``Idempotency-Key`` header, checked: 1-255 printable ASCII characters."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not raw.isascii() or not raw.isprintable():
        raise validation_error(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters", HEADER
        )
    return raw


class Seen:
    """Ids this process accepted (Kafka acknowledged) for a key or event id, at most
    ``capacity`` of them (oldest forgotten first): what lets it answer a replay without
    producing again, and set ``Idempotent-Replayed``."""

    def __init__(self, capacity: int = SEEN_CAPACITY) -> None:
        self.capacity = capacity
        self.ids: OrderedDict[str, float] = OrderedDict()

    def replayed(self, webhook_id: str, window_s: float) -> bool:
        """Whether this process accepted ``webhook_id`` within the last ``window_s``."""
        now = time.monotonic()
        while self.ids:
            oldest, at = next(iter(self.ids.items()))
            if now - at < window_s:
                break
            del self.ids[oldest]
        return webhook_id in self.ids

    def remember(self, webhook_id: str) -> None:
        """Note that ``webhook_id`` was accepted now (the first time only: the window runs
        from the first acceptance, as the agents' claim does)."""
        if webhook_id in self.ids:
            return
        self.ids[webhook_id] = time.monotonic()
        while len(self.ids) > self.capacity:
            self.ids.popitem(last=False)


async def projected(pool: asyncpg.Pool | None, webhook_id: str, window_s: float) -> bool:
    """Whether the status view holds ``webhook_id`` from the last ``window_s`` (another gateway
    process, or this one before a restart, accepted it); False when PostgreSQL does not answer
    within :data:`DB_CHECK_S` — this only decides the header and whether to produce again."""
    if pool is None:
        return False
    try:
        async with asyncio.timeout(DB_CHECK_S):
            async with pool.acquire() as conn:
                return bool(await conn.fetchval(_PROJECTED, webhook_id, window_s * 1000))
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.debug("idempotency look-up of %s in the status view failed: %s", webhook_id, exc)
        return False


def ingest_id(subscription_id: str, idempotency_key: str) -> str:
    """The webhook id of an ingest with ``Idempotency-Key`` for one subscription."""
    return records.keyed_id(subscription_id, idempotency_key)


def events_id(idempotency_key: str) -> str:
    """The event id of a fan-out with ``Idempotency-Key`` and no ``event_id``."""
    return records.keyed_id(EVENTS_SCOPE, idempotency_key)
