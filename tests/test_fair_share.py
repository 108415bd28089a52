"""Fair share: one owner's flood holds at most N of the workers' slots, another owner's jobs
start without waiting behind it, and waiting for a slot is not a try."""

from __future__ import annotations

import time
from asyncio import gather
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from coredis.exceptions import ResponseError
from streaq import Worker

from shared.config import Settings
from shared.jobs import CONTEXT_KWARG
from shared.queue.connection import client_streaq
from shared.queue.keys import Keys
from worker.app import build_worker
from worker.fair_share import FairShare
from worker.retry_policy import current_job

pytestmark = pytest.mark.anyio


class Probe:
    """A task that records who started when, and how many of each owner ran at once."""

    def __init__(self, worker: Worker[Any], seconds: float) -> None:
        self.starts: list[str] = []
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

        @worker.task(name="fair_probe", timeout=30, max_tries=None)
        async def fair_probe(tag: str) -> str:
            owner = current_job().owner
            self.starts.append(owner)
            self.running[owner] += 1
            self.peak[owner] = max(self.peak[owner], self.running[owner])
            try:
                await anyio.sleep(seconds)
            finally:
                self.running[owner] -= 1
            return tag


@asynccontextmanager
async def running(worker: Worker[Any]) -> AsyncIterator[None]:
    worker.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run_async)
        yield
        tg.cancel_scope.cancel()


async def enqueue(worker: Worker[Any], owner: str, count: int) -> list[Any]:
    return [await worker.enqueue_unsafe("fair_probe", f"{owner}{i}",
                                        **{CONTEXT_KWARG: {"owner": owner}}).start()
            for i in range(count)]


async def finish(tasks: list[Any]) -> list[Any]:
    results = []
    for task in tasks:
        results.append(await task.result(timeout=60))
    return results


@pytest.mark.parametrize("limit", [2, 0])
async def test_a_flood_holds_at_most_the_limit_and_others_start_first(
        settings: Settings, mongo: Any, limit: int) -> None:
    worker = build_worker(settings.model_copy(update={"owner_concurrency": limit}),
                          concurrency=4)
    probe = Probe(worker, seconds=0.05)
    async with running(worker):
        flood = await enqueue(worker, "tenant-a", 20)
        few = await enqueue(worker, "tenant-b", 2)
        results = await finish(flood + few)
    assert all(r.success for r in results), [r for r in results if not r.success]
    assert sorted(probe.starts) == ["tenant-a"] * 20 + ["tenant-b"] * 2
    b_last = max(i for i, owner in enumerate(probe.starts) if owner == "tenant-b")
    a_fifth = [i for i, owner in enumerate(probe.starts) if owner == "tenant-a"][4]
    if limit:
        # THEN A never ran more than its limit, and B did not wait behind A's backlog
        assert probe.peak["tenant-a"] <= limit
        assert b_last < a_fifth, probe.starts
    else:
        # Without the limit (the control): B waits behind A's backlog.
        assert b_last > a_fifth, probe.starts


async def test_waiting_for_a_slot_is_not_a_try(settings: Settings, mongo: Any) -> None:
    worker = build_worker(settings.model_copy(update={"owner_concurrency": 1}), concurrency=2)
    Probe(worker, seconds=0.01)
    # GIVEN the owner's only slot is held (by a job on another worker) for the next second
    slots = f"offload:{settings.queue_name}:running:tenant-a"
    async with running(worker):
        lapse = int(time.time() * 1000) + 1000
        await worker.redis.zadd(slots, {"elsewhere": lapse})
        [task] = await enqueue(worker, "tenant-a", 1)
        result = await task.result(timeout=30)
        deferred = await worker.redis.get(f"offload:{settings.queue_name}:job:{task.id}:deferred")
    # THEN the one-try job waited (deferred several times) and then ran, and succeeded
    assert result.success, result
    assert int(deferred or 0) >= 2


@pytest.mark.parametrize("demoted", [True, False])
async def test_a_demoted_flood_starts_after_another_owners_jobs(
        settings: Settings, mongo: Any, demoted: bool) -> None:
    # The order property demotion relies on: a worker reads higher priorities first, so a
    # flood enqueued at the lowest priority (shared.limits.fair_priority) waits behind
    # another owner's job enqueued after it.
    worker = build_worker(settings.model_copy(update={"owner_concurrency": 0}),
                          concurrency=1)
    probe = Probe(worker, seconds=0.01)
    tasks = []
    # Everything waits before the worker starts, enqueued by a client as the API would.
    async with client_streaq(settings) as client:
        for i in range(6):
            priority = "low" if demoted and i >= 2 else "normal"
            tasks.append(await client.enqueue_unsafe(
                "fair_probe", f"a{i}", **{CONTEXT_KWARG: {"owner": "tenant-a"}}
            ).start(priority=priority))
        tasks.append(await client.enqueue_unsafe(
            "fair_probe", "b0", **{CONTEXT_KWARG: {"owner": "tenant-b"}}
        ).start(priority="normal"))
        async with running(worker):
            results = await finish(tasks)
    assert all(r.success for r in results)
    b_at = probe.starts.index("tenant-b")
    assert b_at == (2 if demoted else 6), probe.starts


async def test_concurrent_acquires_grant_exactly_the_limit(settings: Settings) -> None:
    # GIVEN a limit of 2 and seven jobs of one owner starting at once
    async with client_streaq(settings) as client:
        fair = FairShare(client, Keys(settings.queue_name), per_owner=2)
        got = await gather(*(fair.acquire("tenant-a", "fair_probe", 30) for _ in range(7)),
                           fair.acquire("tenant-b", "fair_probe", 30))
        # THEN two of A's and B's one are granted
        granted = [slot for slot in got[:7] if slot is not None]
        assert len(granted) == 2 and got[7] is not None
        # AND a freed slot goes to the next job that asks, the same slot, with no new one
        fair.release(granted[0])
        again = await fair.acquire("tenant-a", "fair_probe", 30)
        assert again == granted[0]
        assert await fair.acquire("tenant-a", "fair_probe", 30) is None
        await fair.close()


async def test_a_held_slot_is_the_owner_s_until_given_back(settings: Settings) -> None:
    keys = Keys(settings.queue_name)
    slots = f"{keys.prefix}running:tenant-a"
    async with client_streaq(settings) as client:
        here = FairShare(client, keys, per_owner=1, hold_seconds=0.2)
        there = FairShare(client, keys, per_owner=1)  # another worker
        slot = await here.acquire("tenant-a", "fair_probe", 30)
        assert slot is not None
        # WHEN its job ends, the slot stays with this worker: still counted in Redis, so
        # another worker cannot exceed the limit, and this worker's next job reuses it
        here.release(slot)
        assert await client.redis.zcard(slots) == 1
        assert await there.acquire("tenant-a", "fair_probe", 30) is None
        # AND a job that needs a longer lease than the slot has renews it in Redis
        longer = await here.acquire("tenant-a", "fair_probe", 3600)
        assert longer is not None and longer.id == slot.id
        assert longer.lease_until_ms > slot.lease_until_ms
        assert await client.redis.zscore(slots, slot.id) == longer.lease_until_ms
        here.release(longer)
        # THEN unused for its hold time, it goes back to Redis and the other worker gets it
        with anyio.fail_after(10):
            while await client.redis.zcard(slots):
                await anyio.sleep(0.05)
        taken = await there.acquire("tenant-a", "fair_probe", 30)
        assert taken is not None and taken.id != slot.id
        await there.close()


async def test_acquire_survives_an_emptied_script_cache_and_isolates_a_bad_key(
        settings: Settings) -> None:
    async with client_streaq(settings) as client:
        fair = FairShare(client, Keys(settings.queue_name), per_owner=1)
        assert await fair.acquire("tenant-a", "fair_probe", 30) is not None
        # WHEN the script cache is flushed (as after a failover to a new primary)
        await client.redis.script_flush()
        # AND another owner's slots key holds the wrong type, asked at the same time
        await client.redis.set(f"{Keys(settings.queue_name).prefix}running:tenant-x", "junk")
        got = await gather(fair.acquire("tenant-b", "fair_probe", 30),
                           fair.acquire("tenant-x", "fair_probe", 30),
                           return_exceptions=True)
    # THEN the script is loaded again and B is granted; X's acquire fails with its own error
    assert got[0] is not None and not isinstance(got[0], BaseException)
    assert isinstance(got[1], ResponseError) and "wrong kind of value" in str(got[1])


@pytest.mark.parametrize("limit", [1, 0])
async def test_a_finished_job_frees_its_unfinished_place_and_a_stop_its_slot(
        settings: Settings, mongo: Any, limit: int) -> None:
    worker = build_worker(settings.model_copy(update={"owner_concurrency": limit}),
                          concurrency=2)
    Probe(worker, seconds=0.01)
    keys = Keys(settings.queue_name)
    slots = f"{keys.prefix}running:tenant-a"
    async with client_streaq(settings) as client:
        task = client.enqueue_unsafe("fair_probe", "a0", **{CONTEXT_KWARG: {"owner": "tenant-a"}})
        # GIVEN the job counts among the owner's unfinished ones (as the API's enqueue does)
        await client.redis.zadd(keys.unfinished("tenant-a"), {task.id: 2**40})
        await client.redis.zadd(keys.unfinished("tenant-a"), {"other-job": 2**40})
        await task.start()
        # WHEN a worker runs it and stops on its own (burst: when nothing is left, as on
        # SIGTERM once its jobs are done)
        worker.handle_signals, worker.burst = False, True
        with anyio.fail_after(60):
            await worker.run_async()
        result = await task.result(timeout=5)
        left = await client.redis.zrange(keys.unfinished("tenant-a"), 0, -1)
        held = await client.redis.zcard(slots)
    # THEN it ran, and no longer counts among the owner's unfinished jobs (others keep
    # their places); the slot it held for the owner's next job went back at the stop
    assert result.success, result
    assert list(left) == ["other-job"]
    assert held == 0
