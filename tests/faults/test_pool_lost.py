"""Fault 9: Redis killed under concurrent callers in one process (the dev stack, the CLI,
any multi-caller process). Every call that fails says so as ``QueueUnavailable`` (a 503
at the API), never as coredis' bare ``RuntimeError`` about an exited pool, and the queue
works again once Redis is back."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.queue import JobQueue
from tests.faults.servers import PersistentRedis

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

CALLERS = 16


async def test_callers_racing_a_dying_pool_get_queue_unavailable(
        own_redis: PersistentRedis) -> None:
    settings = Settings(env="development", redis_url=own_redis.url,
                        queue_name=f"pool-lost-{uuid.uuid4().hex[:8]}")
    failures: Counter[str] = Counter()
    accepted = 0
    stop = asyncio.Event()

    async def caller(queue: JobQueue) -> None:
        nonlocal accepted
        while not stop.is_set():
            try:
                await queue.enqueue("cleanup_expired_sessions", {}, owner="u1")
                accepted += 1
            except Exception as exc:  # counted by type, asserted below
                failures[type(exc).__name__] += 1
                await asyncio.sleep(0.01)

    async with JobQueue(settings) as queue:
        for _round in range(3):
            tasks = [asyncio.create_task(caller(queue)) for _ in range(CALLERS)]
            await asyncio.sleep(0.5)
            assert own_redis.proc is not None
            own_redis.proc.kill()  # SIGKILL mid-load
            own_redis.proc.wait()
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
            stop.clear()
            own_redis.start()  # same port and data directory
        # THEN every failure was reported as the queue being unavailable
        assert accepted > 0
        assert failures and set(failures) == {QueueUnavailable.__name__}, failures
        # AND the same queue object works again once Redis is back
        job = await queue.enqueue("cleanup_expired_sessions", {}, owner="u1")
        assert job.id
