"""Operator commands for FIFO subscriptions (docs/ordering.md): skip or resume the webhook at
the head of an ordering key.

The gateway does not know which partition holds the key, so the command goes to every
partition of the parked topic (key: the webhook id); the agent that owns the key's partition
applies it when the webhook is that key's head (skip: any head; resume: a halted one) and
ignores it everywhere else.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ingest_gateway.errors import not_found, unavailable
from ingest_gateway.jsonio import json_response
from ingest_gateway.producing import produce
from ingest_gateway.state import gateway
from schemas import parked, records
from schemas.topics import PARKED
from webhookmaster.kafka_clients import admin_client
from webhookmaster.settings import Settings

TOPIC_LABEL = "parked"
_PARTITIONS: dict[str, int] = {}


async def skip(request: web.Request) -> web.Response:
    """POST /api/webhooks/{id}/skip/: end the head of a FIFO key (not delivered again)."""
    return await _command(request, "skip")


async def resume(request: web.Request) -> web.Response:
    """POST /api/webhooks/{id}/resume/: try a halted head again from its first attempt."""
    return await _command(request, "resume")


async def _command(request: web.Request, op: str) -> web.Response:
    gw = gateway(request)
    webhook_id = request.match_info["id"]
    if records.webhook_id_problem(webhook_id) is not None:
        raise not_found(f"no webhook {webhook_id!r}")
    topic = gw.settings.topic(PARKED)
    count = await _partitions(gw.settings, topic)
    value = parked.command(op, webhook_id)
    headers = [(parked.OP_HEADER, op.encode())]
    await asyncio.gather(
        *(
            produce(gw, topic, TOPIC_LABEL, webhook_id, value, headers, partition=p)
            for p in range(count)
        )
    )
    return json_response({"id": webhook_id, "command": op, "status": "accepted"}, 202)


async def _partitions(settings: Settings, topic: str) -> int:
    """The parked topic's partition count (asked once)."""
    if topic not in _PARTITIONS:
        loop = asyncio.get_running_loop()

        def count() -> int:
            meta = admin_client(settings).list_topics(topic, timeout=10)
            found = meta.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return 0
            return len(found.partitions)

        found = await loop.run_in_executor(None, count)
        if not found:
            raise unavailable(f"topic {topic} is not there", "kafka_unavailable")
        _PARTITIONS[topic] = found
    return _PARTITIONS[topic]
