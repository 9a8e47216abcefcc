"""Records of the parked topic (FIFO subscriptions, docs/ordering.md): shared by the delivery
agents, which write and read them, and the gateway, which writes operator commands.

Every record carries its kind in the :data:`OP_HEADER` header. An ``enq`` record is a webhook in
the header form (:class:`schemas.records.Webhook`) plus :data:`KEY_HEADER` (its queue),
:data:`SOURCE_HEADER` (the ingest offset it came from) and, when known, :data:`WAITING_FOR_HEADER`
(the webhook before it in its queue). Every other record is a JSON object
``{"op", "key", "webhook_id", ...}`` (:func:`command`).
"""

from __future__ import annotations

from typing import Any

import orjson

OP_HEADER = "wm-fifo-op"
KEY_HEADER = "wm-fifo-key"
SOURCE_HEADER = "wm-fifo-source"
WAITING_FOR_HEADER = "wm-waiting-for"
OPS = ("enq", "att", "end", "halt", "skip", "resume")
OPERATOR_OPS = ("skip", "resume")


def fifo_key(subscription_id: str, ordering_key: str | None) -> str:
    """The queue a webhook joins: its subscription and ordering key (none: the subscription)."""
    return f"{subscription_id}/{ordering_key or ''}"


def command(op: str, webhook_id: str, key: str = "", **extra: Any) -> bytes:
    """The JSON value of a record other than ``enq``."""
    return orjson.dumps({"op": op, "key": key, "webhook_id": webhook_id, **extra})
