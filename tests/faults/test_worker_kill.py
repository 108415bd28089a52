"""Fault 1: a worker process killed with SIGKILL mid-run loses no job.

2,000 real ``cleanup_expired_sessions`` jobs (a MongoDB ``delete_many`` each: cheap, so
the test measures the queue, not moto) run on two ``offload worker`` processes; one is
killed once a third of them are done. Every job must complete; the duplicates (jobs that
started twice, counted from the retry policy's "job <name> <id> try" log line of both
processes) must not exceed the jobs in flight at the kill; the time from the kill until
the last of those in-flight jobs finished elsewhere is the recovery time, bounded by the
idle timeout (the reclaim setting) plus a margin.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.jobs import running_ids, wait_drained, wait_finished
from tests.integration.procs import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOBS = 2000
JOB = "cleanup_expired_sessions"
IDLE_TIMEOUT = 5.0  # OFFLOAD_WORKER_IDLE_TIMEOUT_SECONDS: reclaim after 5 s of silence
RUN_LINE = re.compile(rf"job {JOB} ([0-9a-f]{{32}}) try")


async def enqueue_many(queue: JobQueue, count: int, batch: int = 200) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, batch):
        jobs = await asyncio.gather(*(
            queue.enqueue(JOB, {"older_than_hours": 24}, owner="kill-test")
            for _ in range(min(batch, count - start))
        ))
        ids.extend(job.id for job in jobs)
    return ids


def runs(workers: list[WorkerProcess]) -> Counter[str]:
    """How many times each job started, over every worker's log."""
    return Counter(m.group(1) for w in workers for m in RUN_LINE.finditer(w.output()))


async def test_sigkill_of_one_of_two_workers_loses_no_job(
    settings: Settings, tmp_path: Path
) -> None:
    fast = settings.model_copy(update={"worker_idle_timeout_seconds": IDLE_TIMEOUT})
    workers = [WorkerProcess(fast, tmp_path / name) for name in ("a", "b")]
    try:
        for w in workers:
            w.wait_ready(fast)
        async with JobQueue(fast) as queue:
            # GIVEN 2,000 jobs on two workers
            started = time.monotonic()
            ids = await enqueue_many(queue, JOBS)
            while (await queue.stats()).queued > JOBS * 2 // 3:
                await asyncio.sleep(0.02)
            # WHEN one of them is killed mid-run
            before = await running_ids(queue)
            workers[0].signal(signal.SIGKILL)
            killed_at, killed_wall = time.monotonic(), time.time()
            workers[0].wait(timeout=5)
            in_flight = before | await running_ids(queue)
            left_at_kill = (await queue.stats()).queued
            recovered = await wait_finished(queue, sorted(in_flight), "kill-test", 60)
            # Recovery: from the kill until the last job in flight at the kill finished.
            recovery_seconds = max(
                (v.finished_at.timestamp() - killed_wall for v in recovered if v.finished_at),
                default=time.monotonic() - killed_at,
            )
            await wait_drained(queue, 60)
            total_seconds = time.monotonic() - started
            views = await wait_finished(queue, ids, "kill-test", 5)
        # THEN every job completed, at least once, and at most the in-flight ones twice
        assert [v.status for v in recovered] == ["done"] * len(recovered)
        not_done = Counter((v.status, str(v.error)) for v in views if v.status != "done")
        assert not not_done, (not_done, workers[1].output()[-2000:])
        started_runs = runs(workers)
        assert set(started_runs) == set(ids)
        duplicates = sum(n - 1 for n in started_runs.values())
        assert duplicates <= len(in_flight), (duplicates, in_flight)
        assert recovery_seconds < IDLE_TIMEOUT + 10
        record(
            "fault 1 worker SIGKILL",
            jobs=JOBS,
            workers=2,
            idle_timeout_s=IDLE_TIMEOUT,
            queued_at_kill=left_at_kill,
            in_flight_at_kill=len(in_flight),
            duplicates=duplicates,
            recovery_s=round(recovery_seconds, 2),
            total_s=round(total_seconds, 2),
            jobs_per_s=round(JOBS / total_seconds, 1),
        )
    finally:
        for w in workers:
            w.stop()
