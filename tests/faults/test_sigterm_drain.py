"""Fault 2: SIGTERM drains a worker: jobs in flight finish within the grace period, no new
job is fetched, the process exits 0; a job longer than the grace period is cancelled and
re-run by another worker, not lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.jobs import enqueue_fetches, wait_finished
from tests.integration.procs import WorkerProcess, slow_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GRACE = 3


async def wait_running(queue: JobQueue, ids: list[str], owner: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = [await queue.view(i, owner) for i in ids]
        if all(v.status == "running" for v in views):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all running: {[v.status for v in views]}")


async def test_sigterm_finishes_short_jobs_fetches_nothing_and_hands_on_the_long_one(
    settings: Settings, tmp_path: Path
) -> None:
    fast = settings.model_copy(update={"worker_grace_period_seconds": GRACE,
                                       "worker_idle_timeout_seconds": 3.0})
    first = WorkerProcess(fast, tmp_path / "first", "--concurrency", "3")
    second: WorkerProcess | None = None
    try:
        first.wait_ready(fast)
        with slow_server() as (base, handler):
            async with JobQueue(fast) as queue:
                # GIVEN three jobs running (two shorter than the grace period, one longer)
                short = await enqueue_fetches(
                    queue, [f"{base}/slow/short{i}/2" for i in range(2)], "drain")
                (long_id,) = await enqueue_fetches(queue, [f"{base}/slow/long/7"], "drain")
                await wait_running(queue, [*short, long_id], "drain", 10)
                # ... and three more waiting for a slot
                waiting = await enqueue_fetches(
                    queue, [f"{base}/slow/waiting{i}/0" for i in range(3)], "drain")
                # WHEN the worker receives SIGTERM
                first.signal(signal.SIGTERM)
                signalled = time.monotonic()
                code = first.wait(timeout=GRACE + 10)
                drain_seconds = time.monotonic() - signalled
                hits_after_drain = dict(handler.hits)
                short_views = await wait_finished(queue, short, "drain", 0)
                # THEN another worker re-runs the long job and runs the waiting ones
                second = WorkerProcess(fast, tmp_path / "second")
                second.wait_ready(fast)
                rest = await wait_finished(queue, [long_id, *waiting], "drain", 30)
        assert code == 0, first.output()[-3000:]
        assert drain_seconds < GRACE + 5
        assert [v.status for v in short_views] == ["done", "done"]
        assert not any(path.startswith("/slow/waiting") for path in hits_after_drain)
        assert hits_after_drain["/slow/long/7"] == 1
        assert "cancelled, will be retried" in first.output()
        assert [v.status for v in rest] == ["done"] * 4, second.output()[-3000:]
        assert handler.hits["/slow/long/7"] == 2
        record("fault 2 SIGTERM drain", grace_period_s=GRACE, exit_code=code,
               drain_s=round(drain_seconds, 2), short_jobs_done_in_grace=2,
               jobs_fetched_after_sigterm=0, long_job_runs=handler.hits["/slow/long/7"])
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_sigterm_hands_on_fetched_jobs_it_did_not_start_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    # The default idle timeout (60 s): without the hand-on, a job that waited in the
    # stopping worker's prefetch buffer would wait that long for another worker.
    assert settings.worker_idle_timeout_seconds >= 60
    drain = settings.model_copy(update={"worker_grace_period_seconds": GRACE})
    first = WorkerProcess(drain, tmp_path / "first", "--concurrency", "1")
    second: WorkerProcess | None = None
    try:
        first.wait_ready(drain)
        with slow_server() as (base, handler):
            async with JobQueue(drain) as queue:
                # GIVEN a worker with one slot running a job and one more job fetched
                # into its buffer (it fetches as many as its concurrency ahead)
                (running,) = await enqueue_fetches(queue, [f"{base}/slow/running/1"], "hand")
                await wait_running(queue, [running], "hand", 10)
                (buffered,) = await enqueue_fetches(queue, [f"{base}/slow/buffered/0"], "hand")
                await asyncio.sleep(0.5)  # fetched by now: the worker's fetch loop is idle
                # WHEN it receives SIGTERM
                first.signal(signal.SIGTERM)
                code = first.wait(timeout=GRACE + 10)
                # THEN it finished the running job, did not start the buffered one ...
                assert "/slow/buffered/0" not in handler.hits
                assert (await queue.view(running, "hand")).status == "done"
                # ... and handed it on: another worker runs it long before the idle timeout
                second = WorkerProcess(drain, tmp_path / "second")
                second.wait_ready(drain)
                started = time.monotonic()
                (view,) = await wait_finished(queue, [buffered], "hand", 20)
                took = time.monotonic() - started
        assert code == 0, first.output()[-3000:]
        assert view.status == "done", view
        assert took < drain.worker_idle_timeout_seconds / 3
        assert "handed on 1 fetched job(s) it did not start" in first.output()
        record("fault 2b SIGTERM hands on buffered jobs", idle_timeout_s=60,
               buffered_job_done_after_s=round(took, 2))
    finally:
        first.stop()
        if second is not None:
            second.stop()
