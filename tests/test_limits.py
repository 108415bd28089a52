"""Per-owner quotas in Redis (shared/limits.py), against a real private redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.config import Settings
from shared.limits import RateLimited, job_finished
from shared.queue import JobQueue

pytestmark = pytest.mark.anyio
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


def tight(settings: Settings, **limits: Any) -> Settings:
    values = {"limit_enqueue_per_second": 0.0, "limit_unfinished_jobs": 0,
              "limit_long_polls": 0, **limits}
    return settings.model_copy(update=values)


async def test_the_bucket_admits_a_burst_then_refills_at_the_rate(settings: Settings) -> None:
    s = tight(settings, limit_enqueue_per_second=20.0, limit_enqueue_burst=5)
    async with JobQueue(s) as queue:
        for _ in range(5):
            await queue.admit("ada")
        with pytest.raises(RateLimited) as over:
            await queue.admit("ada")
        await queue.admit("bob")  # another owner has a bucket of their own
        await asyncio.sleep(0.12)  # 20/s: more than two tokens back
        await queue.admit("ada")
    assert over.value.status_code == 429
    assert over.value.headers["Retry-After"] == "1"
    assert over.value.headers["RateLimit-Policy"] == '"enqueue";q=5;w=1'
    assert over.value.headers["RateLimit"] == '"enqueue";r=0;t=1'


async def test_unfinished_jobs_are_capped_and_freed_when_they_finish(settings: Settings) -> None:
    s = tight(settings, limit_unfinished_jobs=2)
    async with JobQueue(s) as queue:
        first = await queue.enqueue("generate_sales_report", REPORT, owner="ada")
        await queue.admit("ada")
        await queue.enqueue("generate_sales_report", REPORT, owner="ada")
        with pytest.raises(RateLimited, match="at most 2"):
            await queue.admit("ada")
        # A finished (or aborted) job frees its place.
        await job_finished(queue.redis, queue.keys, "ada", first.id)
        await queue.admit("ada")
        second = await queue.enqueue("generate_sales_report", REPORT, owner="ada")
        await queue.abort(second.id, "ada", wait_seconds=0.1)
        await queue.admit("ada")
        # Every key has an expiry: a crashed worker never holds a place for ever.
        assert await queue.redis.pttl(queue.keys.unfinished("ada")) > 0


async def test_entries_past_their_deadline_no_longer_count(settings: Settings) -> None:
    s = tight(settings, limit_unfinished_jobs=1)
    async with JobQueue(s) as queue:
        past = int(time.time() * 1000) - 1
        await queue.redis.zadd(queue.keys.unfinished("ada"), {"lost-job": past})
        await queue.admit("ada")  # the lost job's deadline passed: it is pruned


async def test_long_polls_take_leases_up_to_the_limit(settings: Settings) -> None:
    s = tight(settings, limit_long_polls=2)
    async with JobQueue(s) as queue:
        one = await queue.lease_long_poll("ada", 20)
        two = await queue.lease_long_poll("ada", 20)
        with pytest.raises(RateLimited, match="at most 2"):
            await queue.lease_long_poll("ada", 20)
        await queue.release_long_poll("ada", one)
        assert await queue.lease_long_poll("ada", 20) is not None
        assert two is not None


async def test_system_jobs_and_disabled_limits_are_never_refused(settings: Settings) -> None:
    s = tight(settings, limit_enqueue_per_second=0.001, limit_enqueue_burst=1,
              limit_unfinished_jobs=1, limit_long_polls=1)
    async with JobQueue(s) as queue:
        for _ in range(5):
            await queue.admit("system")
            assert await queue.lease_long_poll("system", 5) is None
    async with JobQueue(tight(settings)) as queue:
        for _ in range(50):
            await queue.admit("ada")


async def test_admit_counts_unfinished_jobs_and_a_flood_is_demoted(settings: Settings) -> None:
    from shared.limits import fair_priority

    s = tight(settings, fair_share_demote_after=2)
    counts, priorities = [], []
    async with JobQueue(s) as queue:
        for _ in range(4):
            unfinished = await queue.admit("ada")
            priority = fair_priority(s, unfinished, "normal")
            await queue.enqueue("generate_sales_report", REPORT, owner="ada", priority=priority)
            counts.append(unfinished)
            priorities.append(priority)
        assert await queue.admit("bob") == 0
        waiting = await queue.queued_by_priority()
    assert counts == [0, 1, 2, 3]
    assert priorities == ["normal", "normal", "low", "low"]
    assert waiting == {"low": 2, "normal": 2, "high": 0}
    # Off: nothing is counted or demoted.
    off = tight(settings, fair_share_demote_after=0)
    assert fair_priority(off, 10_000, "high") == "high"
    async with JobQueue(off) as queue:
        assert await queue.admit("ada") == 0
