"""Auto-disable: a subscription whose endpoint answers 410 Gone, or whose deliveries only fail
for ``WM_AUTO_DISABLE_AFTER`` seconds, is set inactive by the agent that delivers it.

The agent writes the new subscription record to the compacted subscriptions topic itself (as
the gateway does, secret encrypted), then an operator event to the operator-events topic.
Concurrency rule (Kafka has no compare-and-set): the disable is a read-modify-write of the
latest record the agent's table holds once it has caught up with the topic's end (a read
barrier); it changes only ``is_active``, ``disabled_reason``, ``disabled_at`` and
``updated_at``, and is skipped when the subscription is already inactive or deleted. If another
writer's record (an API PATCH) lands between that read and the disable's own record, the other
writer wins: the agent, reading past its own record, finds it and writes it again, and counts no
disable (the next qualifying failure tries again).

The failure clock is per agent process, in memory: it starts at the first failure after a
success (or after the agent took the subscription) and a success stops it; a restart or a
rebalance restarts it, so a disable can come later than the window, never earlier.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import msgspec
from prometheus_client import Counter

from schemas import records
from schemas.topics import OPERATOR_EVENTS, SUBSCRIPTIONS
from webhookmaster.kafka_clients import AsyncProducer, record_offset
from webhookmaster.settings import Settings
from webhookmaster.subscription_table import Subscription, SubscriptionTable

log = logging.getLogger(__name__)

AUTO_DISABLED = Counter(
    "webhookmaster_subscriptions_auto_disabled_total",
    "Subscriptions a delivery agent disabled, by cause (gone: 410 Gone; failing: only "
    "failures for WM_AUTO_DISABLE_AFTER).",
    ["cause"],
)
for _cause in ("gone", "failing"):
    AUTO_DISABLED.labels(_cause)

CATCH_UP_S = 10.0  # bound of the read barrier before a disable


class AutoDisabler:
    """Watches attempt results per subscription and disables the ones that qualify."""

    def __init__(
        self, settings: Settings, table: SubscriptionTable, producer: AsyncProducer
    ) -> None:
        self.window = settings.auto_disable_after_s
        self.table = table
        self.producer = producer
        self.subscriptions_topic = settings.topic(SUBSCRIPTIONS)
        self.events_topic = settings.topic(OPERATOR_EVENTS)
        self.failing_since: dict[str, float] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def observe(self, sub: Subscription, delivered: bool, status: int | None) -> None:
        """Account one attempt's result; disable ``sub`` when it qualifies."""
        if delivered:
            self.failing_since.pop(sub.id, None)
            return
        if status == 410:
            await self.disable(sub.id, "gone", "the endpoint answered 410 Gone")
            return
        now = time.monotonic()
        first = self.failing_since.setdefault(sub.id, now)
        if now - first >= self.window:
            await self.disable(
                sub.id,
                "failing",
                f"deliveries only failed for {now - first:.0f} s "
                f"(WM_AUTO_DISABLE_AFTER={self.window:g})",
            )

    async def _yield_to_other_writer(
        self,
        sub_id: str,
        base: int,
        written: int,
        other: tuple[Subscription | None] | None,
    ) -> bool:
        """After the disable's own record: when another writer's record landed between the
        barrier's read (offset ``base``) and it (``other``: already read), write that record
        again (it wins) and return True."""
        if other is None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.table.wait_caught_up, CATCH_UP_S)
            other = self.table.passed(sub_id, base, written)
        if other is None:
            return False
        theirs = other[0]
        value = None if theirs is None else records.dumps(theirs.to_stored(self.table.box))
        msg = await self.producer.send(self.subscriptions_topic, value, sub_id)
        self.table.apply(sub_id, theirs, record_offset(msg))
        log.warning("disable of %s gave way to a concurrent write of it", sub_id)
        return True

    async def disable(self, sub_id: str, cause: str, reason: str) -> bool:
        """Set ``sub_id`` inactive with ``reason`` (see the module's rule); False when it was
        already inactive or deleted."""
        async with self.locks[sub_id]:
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, self.table.wait_caught_up, CATCH_UP_S):
                log.warning(
                    "subscription table not caught up; disabling %s on what it holds", sub_id
                )
            current, base = self.table.get(sub_id), self.table.offset_of(sub_id)
            if current is None or not current.is_active:
                return False
            now = records.now_iso()
            sub = msgspec.structs.replace(
                current,
                is_active=False,
                updated_at=now,
                protection=current.protection_with(disabled_reason=reason, disabled_at=now),
            )
            msg = await self.producer.send(
                self.subscriptions_topic, records.dumps(sub.to_stored(self.table.box)), sub_id
            )
            written = record_offset(msg)
            seen, seen_sub = self.table.offset_of(sub_id), self.table.get(sub_id)
            self.table.apply(sub_id, sub, written)
            self.failing_since.pop(sub_id, None)
            if await self._yield_to_other_writer(
                sub_id, base, written, (seen_sub,) if base < seen < written else None
            ):
                return False
            event = {
                "kind": "subscription_disabled",
                "subscription_id": sub_id,
                "cause": cause,
                "reason": reason,
                "at": now,
                "target_url": sub.target_url,
            }
            await self.producer.send(self.events_topic, records.dumps(event), sub_id)
        AUTO_DISABLED.labels(cause).inc()
        log.warning("subscription %s disabled: %s", sub_id, reason)
        return True
