"""``JobQueue.stats`` from Streaq's public reads, and worker presence under Offload's own
key: what the autoscaling signal is made of. Real Redis, real Streaq workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.config import Settings
from shared.queue import JobQueue, now_ms
from shared.queue.presence import announce, count_live, keep_announced, withdraw
from tests.queue_support import Runs, running, stand_in_worker

pytestmark = pytest.mark.anyio

JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


async def test_announced_workers_count_until_they_lapse_or_withdraw(queue: JobQueue) -> None:
    keys = queue.keys
    # GIVEN two workers that announced themselves, one for a short while
    await announce(queue.redis, keys, "w1", ttl_ms=60_000)
    await announce(queue.redis, keys, "w2", ttl_ms=200)
    # THEN both count now; after 0.2 s only the first; after it withdraws, none
    assert await count_live(queue.redis, keys, now_ms()) == 2
    await asyncio.sleep(0.25)
    assert await count_live(queue.redis, keys, now_ms()) == 1
    await withdraw(queue.redis, keys, "w1")
    assert await count_live(queue.redis, keys, now_ms()) == 0
    # and the set itself carries a TTL (it goes when no worker is left announcing)
    await announce(queue.redis, keys, "w3", ttl_ms=60_000)
    assert 0 < await queue.redis.pttl(keys.workers()) <= 60_000


async def test_a_worker_keeps_announcing_while_its_block_runs(queue: JobQueue) -> None:
    keys = queue.keys
    # GIVEN a worker announcing every 0.05 s with a 0.15 s lapse
    async with keep_announced(queue.redis, keys, "w1", every_seconds=0.05, ttl_ms=150):
        # WHEN several lapse periods pass
        for _ in range(4):
            await asyncio.sleep(0.1)
            # THEN it is still counted
            assert await count_live(queue.redis, keys, now_ms()) == 1
    # and once the block ends it is withdrawn at once
    assert await count_live(queue.redis, keys, now_ms()) == 0


async def test_the_offload_worker_is_counted_while_it_runs(queue: JobQueue, worker: Any) -> None:
    # GIVEN the worker build_worker makes, running
    # THEN it counts as one live worker
    assert (await queue.stats()).workers == 1


async def test_stats_count_running_waiting_due_and_future_jobs(
    queue: JobQueue, settings: Settings
) -> None:
    async def slow(kwargs: dict[str, Any]) -> None:
        await asyncio.sleep(1)

    runs = Runs()
    worker = stand_in_worker(settings, {JOB: slow}, runs, concurrency=2)
    # GIVEN five jobs for a worker with two slots, one job due now, one due in an hour
    ids = [(await queue.enqueue(JOB, PAYLOAD, owner="t")).id for _ in range(5)]
    await queue.enqueue(JOB, PAYLOAD, owner="t", delay_seconds=0.2)
    await queue.enqueue(JOB, PAYLOAD, owner="t", delay_seconds=3600)
    await asyncio.sleep(0.4)
    # WHEN no worker runs yet
    idle = await queue.stats()
    # THEN the five are queued, the due one is backlog too, and the oldest waited 0.4 s
    assert (idle.queued, idle.due_scheduled, idle.scheduled, idle.running) == (5, 1, 1, 0)
    assert idle.depth == 6
    assert 0.3 <= idle.oldest_age_seconds < 5
    async with running(worker):
        deadline = asyncio.get_running_loop().time() + 5
        while (busy := await queue.stats()).running < 2:
            assert asyncio.get_running_loop().time() < deadline, busy
            await asyncio.sleep(0.05)
        # WHEN a worker runs two of them (and has moved the due one into its queue)
        # THEN two run and the other four wait, prefetched or not
        assert (busy.running, busy.queued + busy.due_scheduled, busy.scheduled) == (2, 4, 1)
    assert {task_id for task_id, _ in runs.seen[:2]} <= set(ids)  # the oldest ran first


async def test_stats_of_an_empty_queue_are_zeros(queue: JobQueue) -> None:
    stats = await queue.stats()
    assert (stats.depth, stats.running, stats.scheduled, stats.workers,
            stats.oldest_age_seconds) == (0, 0, 0, 0, 0.0)
