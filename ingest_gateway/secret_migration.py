"""Start-up rewrite of subscription records whose secret is in plain text (written before
secrets were encrypted) or under an older key (after a rotation put a new key first).

The gateway is the only writer of the subscriptions topic, so it does this once its table is
loaded: each stale entry is written again, through the API's own write path, under that
subscription's write lock, and only if the entry still comes from the record that was found
stale (an API write meanwhile is newer and already encrypted). Compaction later removes the old
records from the topic's log.
"""

from __future__ import annotations

import asyncio
import logging

from ingest_gateway import subscriptions_api
from ingest_gateway.state import Gateway

log = logging.getLogger(__name__)


async def rewrite_stale(gw: Gateway) -> int:
    """Rewrite every stale entry of the loaded table; returns how many were rewritten. Stops at
    the first failed write (the next start-up tries again) and never raises, except when
    cancelled."""
    stale = gw.table.stale()
    if not stale:
        return 0
    log.info(
        "rewriting %d subscription record(s) with a plain-text secret or an older key", len(stale)
    )
    done = 0
    for sub_id, offset in stale:
        try:
            async with gw.write_lock(sub_id):
                sub = gw.table.get_at(sub_id, offset)
                if sub is None:  # deleted or rewritten since the table found it stale
                    continue
                await subscriptions_api.write(gw, sub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ApiError (Kafka did not acknowledge), a closed producer
            log.warning(
                "rewriting subscription records stopped after %d of %d: %s; the next "
                "start-up tries again",
                done,
                len(stale),
                exc,
            )
            return done
        done += 1
    log.info("rewrote %d subscription record(s) under the newest secret key", done)
    return done
