"""A worker's running jobs (``worker/running_jobs.py``): one run per task id, and a cancel
scope per job that the Redis watchdog can shorten."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from streaq import Worker

from shared.config import Settings
from shared.queue import make_streaq
from worker.running_jobs import CopyCancelled, JobRun, RunningJobs

pytestmark = pytest.mark.anyio


async def test_a_second_copy_gets_the_first_copy_s_value_without_running() -> None:
    jobs = RunningJobs()
    calls: list[str] = []
    release = anyio.Event()

    async def job(run: JobRun) -> str:
        calls.append("ran")
        await release.wait()
        return "value"

    results: list[str] = []

    async def copy() -> None:
        results.append(await jobs.run("t1", job))

    # GIVEN a job running
    async with anyio.create_task_group() as tg:
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        # WHEN a second copy of it starts, and then the first finishes
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        release.set()
    # THEN the code ran once and both copies returned its value
    assert calls == ["ran"]
    assert results == ["value", "value"]
    assert jobs.jobs == {}


async def test_a_second_copy_raises_the_first_copy_s_exception() -> None:
    jobs = RunningJobs()
    failure = RuntimeError("boom")
    release = anyio.Event()

    async def job(run: JobRun) -> None:
        await release.wait()
        raise failure

    raised: list[BaseException] = []

    async def copy() -> None:
        try:
            await jobs.run("t1", job)
        except RuntimeError as exc:
            raised.append(exc)

    # GIVEN a job that will fail, and a second copy of it waiting
    async with anyio.create_task_group() as tg:
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        # WHEN it fails
        release.set()
    # THEN both copies raise the same exception
    assert raised == [failure, failure]


async def test_cut_short_ends_a_job_through_its_own_scope() -> None:
    jobs = RunningJobs()
    results: list[str] = []

    async def job(run: JobRun) -> str:
        with run.scope:
            await anyio.sleep(30)
            return "finished"
        return "cut short"

    async def copy() -> None:
        results.append(await jobs.run("t1", job))

    async with anyio.create_task_group() as tg:
        # GIVEN a long job, and a second copy of it waiting
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        # WHEN the job is given no time left
        with anyio.fail_after(5):
            assert jobs.cut_short_at(anyio.current_time()) == 1
    # THEN it ended through its scope at once, and the copy got the same outcome
    assert results == ["cut short", "cut short"]
    assert jobs.jobs == {}


async def test_a_copy_of_a_job_cancelled_from_outside_raises_copy_cancelled() -> None:
    jobs = RunningJobs()
    raised: list[str] = []
    outer = anyio.CancelScope()

    async def job(run: JobRun) -> None:
        await anyio.sleep(30)

    async def first() -> None:
        with outer:
            await jobs.run("t1", job)

    async def second() -> None:
        try:
            await jobs.run("t1", job)
        except CopyCancelled as exc:
            raised.append(str(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            # GIVEN a job in its own task, and a second copy of it waiting
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            # WHEN the first copy's task is cancelled (Streaq's timeout, a shutdown)
            outer.cancel()
    # THEN the waiting copy is told, and reports no result of its own
    assert len(raised) == 1


@pytest.fixture
async def cut_worker(settings: Settings, mongo: Any) -> AsyncIterator[Worker[Any]]:
    from worker.app import build_worker

    w = build_worker(settings, concurrency=4)
    runs: list[int] = []

    @w.task(name="long_then_quick", max_tries=3)
    async def long_then_quick() -> int:
        runs.append(1)
        if len(runs) == 1:
            await anyio.sleep(30)
        return len(runs)

    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        yield w
        tg.cancel_scope.cancel()


async def test_a_job_cut_short_by_the_watchdog_runs_again(
    settings: Settings, cut_worker: Worker[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="offload.worker")
    client = make_streaq(settings)
    async with client:
        # GIVEN a long job running
        task = client.enqueue_unsafe("long_then_quick")
        await task
        running = RunningJobs.of(cut_worker)
        with anyio.fail_after(10):
            while task.id not in running.jobs:
                await anyio.sleep(0.02)
        # WHEN its deadline is cut (what the watchdog does when Redis fails)
        assert running.cut_short_at(anyio.current_time()) == 1
        result = await client.result_by_id(task.id, timeout=timedelta(seconds=15))
    # THEN it was retried, and its second run succeeded
    assert f"job long_then_quick {task.id} was cut short" in caplog.text
    assert result.success, result
    assert (result.result, result.tries) == (2, 2)
