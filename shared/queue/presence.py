"""Live workers, under Offload's own key: each worker announces itself every few seconds
in a sorted set (worker id -> the time its announcement lapses); a worker that stops
announcing drops out once that time passes. Used by the autoscaling signal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from coredis import PureToken

from shared.queue.keys import Keys, now_ms

log = logging.getLogger("offload.worker")

ANNOUNCE_EVERY_SECONDS = 5.0
# Three announcements' worth: one lost or late write does not make a worker vanish.
ANNOUNCE_TTL_MS = round(3 * ANNOUNCE_EVERY_SECONDS * 1000)


async def announce(redis: Any, keys: Keys, worker_id: str, ttl_ms: int) -> None:
    """Record ``worker_id`` as live for ``ttl_ms``, and forget workers whose time lapsed."""
    now = now_ms()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.workers(), {worker_id: now + ttl_ms})
        pipe.zremrangebyscore(keys.workers(), "-inf", now)
        # The set goes once no worker is left; a shorter lapse never cuts another's.
        pipe.pexpire(keys.workers(), ttl_ms, PureToken.NX)
        pipe.pexpire(keys.workers(), ttl_ms, PureToken.GT)


async def count_live(redis: Any, keys: Keys, now_ms: int) -> int:
    """How many workers announced themselves and have not lapsed at ``now_ms``."""
    return int(await redis.zcount(keys.workers(), f"({now_ms}", "+inf"))


async def withdraw(redis: Any, keys: Keys, worker_id: str) -> None:
    """Stop counting ``worker_id`` at once (a worker shutting down cleanly)."""
    await redis.zrem(keys.workers(), [worker_id])


@asynccontextmanager
async def keep_announced(redis: Any, keys: Keys, worker_id: str,
                         every_seconds: float = ANNOUNCE_EVERY_SECONDS,
                         ttl_ms: int = ANNOUNCE_TTL_MS) -> AsyncIterator[None]:
    """Announce ``worker_id`` now and every ``every_seconds`` while the block runs;
    withdraw it when the block ends."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await announce(redis, keys, worker_id, ttl_ms)
            except Exception as exc:  # Redis trouble: the next beat tries again
                log.warning("could not announce worker %s: %s: %s", worker_id,
                            type(exc).__name__, exc)

    await announce(redis, keys, worker_id, ttl_ms)
    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        try:
            async with asyncio.timeout(every_seconds):
                await withdraw(redis, keys, worker_id)
        except Exception as exc:  # it lapses on its own after ttl_ms
            log.warning("could not withdraw worker %s: %s: %s", worker_id,
                        type(exc).__name__, exc)
