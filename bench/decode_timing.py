"""Time decoding one attempt event: msgspec into :class:`schemas.records.AttemptEvent` (types,
constraints, RFC 3339 checks) against orjson plus the projector's checks of today
(``status_projector.changes``). ``python -m bench.decode_timing``; prints microseconds."""

from __future__ import annotations

import functools
import timeit
import uuid
from typing import Any

from schemas import records
from status_projector import changes

EVENT = records.dumps(
    {
        "webhook_id": "evt_8f14e45fceea167a5a36dedd4bea2543",
        "attempt_id": uuid.uuid4().hex,
        "subscription_id": str(uuid.uuid4()),
        "event_type": "order.created",
        "target_url": "https://example.test/hooks/orders",
        "attempt_number": 2,
        "started_at": records.now_iso(),
        "duration_ms": 41.25,
        "status_code": 503,
        "error": "HTTP 503",
        "response_excerpt": "upstream unavailable",
        "outcome": "retrying",
        "next_attempt_at": records.now_iso(),
        "received_at": records.now_iso(),
    }
)
DECODER = records.decoder(records.AttemptEvent)


def with_orjson(value: bytes) -> Any:
    """orjson and the checks ``changes._decode_attempt`` makes before building its row."""
    data = changes._object(value)
    number = changes._int(data["attempt_number"])
    if data["outcome"] not in ("delivered", "retrying", "failed") or not 1 <= number <= 1000:
        raise records.RecordError("bad outcome or attempt_number")
    attempt_id = data.get("attempt_id") or f"n{number}"
    if not isinstance(attempt_id, str) or len(attempt_id) > 64:
        raise records.RecordError("attempt_id")
    return (
        changes._webhook_id(data["webhook_id"]),
        changes._time(data["started_at"]),
        float(data["duration_ms"]),
        changes._time(data["received_at"]),
        changes._uuid(data["subscription_id"]),
        changes._opt_int(data.get("status_code")),
        changes._opt_str(data.get("error")),
        changes._opt_str(data.get("response_excerpt")),
        changes._opt_time(data.get("next_attempt_at")),
    )


def with_msgspec(value: bytes) -> Any:
    return DECODER.decode(value)


def main() -> None:
    for name, fn in (("orjson + checks", with_orjson), ("msgspec Struct", with_msgspec)):
        runs = 20_000
        best = min(timeit.repeat(functools.partial(fn, EVENT), number=runs, repeat=5))
        print(f"{name:16} {best / runs * 1e6:6.2f} us per attempt event")


if __name__ == "__main__":
    main()
