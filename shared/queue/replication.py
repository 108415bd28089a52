"""Waiting until a replica holds what the primary accepted (``WAIT 1 <ms>``).

Replication is asynchronous: the primary answers a write before any replica has it, and a
failover in between loses it (docs/RELIABILITY.md, "Failover"). ``WAIT`` counts replica
acknowledgements of the writes sent on *its own connection*, and coredis pools and
multiplexes connections, so a bare ``WAIT`` may go where none of the job's writes went.
So one small write of our own goes through coredis's ``ensure_replication``, which keeps
that write's connection and sends ``WAIT`` on it right after. The replication stream is
ordered: a replica that acknowledged this write holds every write the primary answered
before it, the whole enqueue included.
"""

from __future__ import annotations

from typing import Any

from coredis.exceptions import ReplicationError

from shared.queue.keys import Keys, now_ms

# The probe's value is only ever written; it expires so an idle queue leaves nothing.
PROBE_TTL_MS = 60_000


async def confirm_replicated(redis: Any, keys: Keys, timeout_ms: int) -> bool:
    """True once a replica acknowledged every write the primary answered before this
    call; False when none did within ``timeout_ms`` (``redis``: a coredis client)."""
    try:
        with redis.ensure_replication(1, timeout_ms):
            await redis.set(keys.replication_probe(), str(now_ms()), px=PROBE_TTL_MS)
    except ReplicationError:
        return False
    return True
