"""What a worker does about Streaq 7.2's prefetch buffer, so a stopping worker hands on at
once what it fetched and did not start.

Each worker fetches up to ``prefetch`` messages beyond its free slots (a buffer: a
finished job's slot is refilled without a round trip to Redis), and the heartbeat renews
only running jobs, not buffered messages. A worker that stops (SIGTERM, the end of a
burst) leaves its buffered messages pending under its name: another worker would take
them only after the idle timeout. :func:`release_unstarted` marks them reclaimable at once
(``tests/faults/test_sigterm_drain.py``).

A buffered message reclaimed by this same worker while its first copy runs is handled by
the retry policy (:mod:`worker.running_jobs`); one reclaimed by another worker is refused
by Streaq itself (before running, it checks that the message is still its own).
"""

from __future__ import annotations

import logging
from typing import Any

from coredis.response.types import StreamPendingExt
from streaq import Worker
from streaq.constants import REDIS_GROUP

log = logging.getLogger("offload.worker")


def set_prefetch(worker: Worker[Any], prefetch: int | None) -> None:
    """Fetch up to ``prefetch`` messages beyond the free slots (None: Streaq's default, as
    many as the concurrency; 0: only for free slots)."""
    if prefetch is not None:
        # Set after construction: Streaq's constructor reads prefetch=0 as "the default".
        worker.prefetch = worker.concurrency + prefetch


async def release_unstarted(worker: Worker[Any]) -> int:
    """Once ``worker`` has stopped running jobs: make every message still pending under its
    name (fetched, never started) reclaimable by other workers now rather than after the
    idle timeout. Returns how many it released."""
    released = 0
    limit = max(100, 2 * worker.prefetch)
    for priority in worker.priorities:
        stream = worker.stream_key + priority
        pending = await worker.redis.xpending(
            stream, REDIS_GROUP, start="-", end="+", count=limit, consumer=worker.id
        )
        ids = [entry.identifier for entry in pending if isinstance(entry, StreamPendingExt)]
        if ids:
            # Idle as long as the idle timeout: what a reclaiming fetch looks for (Streaq
            # marks a cancelled job's message the same way).
            await worker.redis.xclaim(stream, REDIS_GROUP, worker.id, 0, ids,
                                      justid=True, idle=worker.idle_timeout)
            released += len(ids)
    if released:
        log.info("worker %s handed on %d fetched job(s) it did not start", worker.id,
                 released)
    return released
