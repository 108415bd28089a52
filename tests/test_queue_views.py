"""Job views built from Streaq's public reads, in the cases Streaq's own record misleads:
a result this version cannot read, a failure Streaq stored over the real outcome when a
second delivery started after the first finished, and a pipeline step failed because an
earlier one did. All against real Redis and real Streaq workers."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from streaq import Worker
from streaq.task import TaskResult

from shared.config import Settings
from shared.errors import PermanentJobError
from shared.queue import DeadLetter, JobQueue, Keys, now_ms, record_dead_letter
from shared.queue.meta import JobMeta, encode_payload, payload_digest
from tests.queue_support import OK, Runs, running, stand_in_worker

pytestmark = pytest.mark.anyio

JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
ORDER = {"amount_cents": 100, "currency": "EUR", "reference": "r1"}


async def _result(queue: JobQueue, job_id: str, fn_name: str) -> TaskResult[Any]:
    """The job's stored result once Streaq stored one under ``fn_name``."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        result = await queue.streaq.result_by_id(job_id, timeout=timedelta(seconds=15))
        if result.fn_name == fn_name:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"still {result.fn_name}"
        await asyncio.sleep(0.1)


def _pickle_era_worker(settings: Settings) -> Worker[Any]:
    """A worker of a version before the JSON wire format: Streaq's default (pickle)
    serializer, everything else alike."""
    worker: Worker[Any] = Worker(
        redis_url=settings.redis_url, queue_name=settings.queue_name,
        priorities=list(settings.priorities),
        signing_secret=settings.signing_secret.get_secret_value(),
        idle_timeout=settings.worker_idle_timeout_seconds, handle_signals=False,
    )

    @worker.task(name=JOB)
    async def report(**kwargs: Any) -> dict[str, str]:
        return {"csv": "reports/x.csv"}

    return worker


async def test_a_result_written_with_pickle_reads_as_unreadable_not_an_error(
    queue: JobQueue, settings: Settings
) -> None:
    # GIVEN a job the previous version enqueued (its metadata, a pickled task) and ran
    old = _pickle_era_worker(settings)
    job_id = "d" * 32
    meta = {"name": JOB, "owner": "alice", "created_ms": now_ms(),
            "payload": encode_payload(PAYLOAD), "digest": payload_digest(PAYLOAD),
            "correlation_id": "", "steps": ""}
    await queue.redis.set(queue.keys.job(job_id), json.dumps(meta), ex=600)
    async with running(old):
        task = old.enqueue_unsafe(JOB, **PAYLOAD)
        task.id = job_id
        await task.start(priority="normal")
        await old.result_by_id(job_id, timeout=timedelta(seconds=10))
    # WHEN this version reads it (and long-polls it)
    view = await queue.view(job_id, "alice")
    waited = await queue.wait(job_id, "alice", 1)
    # THEN it is a failed job whose error points at the upgrade order, not a crash
    assert view == waited
    assert view.status == "failed"
    assert view.error is not None and view.error["type"] == "UnreadableResult"
    assert "docs/DEPLOY.md" in view.error["message"]


async def test_a_task_enqueued_with_pickle_reads_as_unreadable_once_a_worker_refused_it(
    queue: JobQueue, settings: Settings
) -> None:
    # GIVEN a job the previous version enqueued (its metadata, a pickled task), still queued
    old = _pickle_era_worker(settings)
    job_id = "e" * 32
    meta = {"name": JOB, "owner": "alice", "created_ms": now_ms(),
            "payload": encode_payload(PAYLOAD), "digest": payload_digest(PAYLOAD)}
    await queue.redis.set(queue.keys.job(job_id), json.dumps(meta), ex=600)
    async with old:
        task = old.enqueue_unsafe(JOB, **PAYLOAD)
        task.id = job_id
        await task.start(priority="normal")
    # WHEN a worker of this version takes it (and cannot read it)
    runs = Runs()
    async with running(stand_in_worker(settings, {JOB: OK}, runs)):
        await _result(queue, job_id, "Unknown")
    # THEN its owner reads a failed job pointing at the upgrade order, not "done"
    view = await queue.view(job_id, "alice")
    assert runs.seen == []
    assert view.status == "failed"
    assert view.error is not None and view.error["type"] == "UnreadableResult"


async def _overwritten_job(queue: JobQueue, settings: Settings, runs: Runs) -> str:
    """A job whose first delivery succeeded and whose second, started after the first
    finished, made Streaq store "Task expired!" over that success.

    Worker A (one slot) fetches a slow task and the job together; while the slow task
    runs, the job waits in A's prefetch buffer, idle, until worker B reclaims and runs it.
    When A's slot frees, it starts its own copy of the finished job."""
    fast = settings.model_copy(update={"worker_idle_timeout_seconds": 0.5})

    async def slow(kwargs: dict[str, Any]) -> None:
        await asyncio.sleep(2)

    first = stand_in_worker(fast, {JOB: OK, "slow": slow}, runs, concurrency=1)
    second = stand_in_worker(fast, {JOB: OK}, runs, concurrency=1)
    blocker = queue.streaq.enqueue_unsafe("slow")
    await blocker.start(priority="high")
    job = await queue.enqueue(JOB, PAYLOAD, owner="alice")
    async with running(first):
        await asyncio.sleep(0.1)  # A holds both messages
        async with running(second):
            await _result(queue, job.id, "Unknown")
    return job.id


async def test_a_success_overwritten_by_a_late_second_delivery_reads_as_done(
    queue: JobQueue, settings: Settings
) -> None:
    # GIVEN a job that ran once, then had its outcome overwritten by a late second copy
    runs = Runs()
    job_id = await _overwritten_job(queue, settings, runs)
    assert runs.of(job_id) == ["alice"]  # the late copy never ran the job
    # WHEN its owner reads it
    view = await queue.view(job_id, "alice")
    # THEN it is done (its result no longer known), not failed
    assert (view.status, view.result, view.error) == ("done", None, None)


async def test_a_failure_overwritten_by_a_late_second_delivery_reads_as_its_dead_letter(
    queue: JobQueue, settings: Settings
) -> None:
    # GIVEN an overwritten job for which the retry policy recorded a dead letter
    runs = Runs()
    job_id = await _overwritten_job(queue, settings, runs)
    letter = DeadLetter(id=job_id, name=JOB, owner="alice", payload=PAYLOAD,
                        error_type="ReportError", error="no orders table", tries=3,
                        failed_at=datetime.now(UTC))
    await record_dead_letter(queue.redis, Keys(settings.queue_name), 600, letter)
    # WHEN its owner reads it
    view = await queue.view(job_id, "alice")
    # THEN it is failed with the dead letter's error
    assert view.status == "failed"
    assert view.error == {"type": "ReportError", "message": "no orders table"}
    assert view.tries == 3


@pytest.mark.parametrize("policy", [False, True])
async def test_a_pipeline_whose_first_step_failed_reads_as_failed_naming_the_step(
    queue: JobQueue, settings: Settings, policy: bool
) -> None:
    from worker.retry_policy import RetryPolicy

    # GIVEN a pipeline whose first step fails for good (with the retry policy, which
    # records a dead letter, or without)
    async def refuse(kwargs: dict[str, Any]) -> None:
        raise PermanentJobError("no such user")

    runs = Runs()
    worker = stand_in_worker(settings, {"validate_order": refuse, "process_order": OK,
                                        "notify_order": OK}, runs)
    if policy:
        RetryPolicy(worker, Keys(settings.queue_name), 600, 600)
    job = await queue.enqueue("place_order", ORDER, owner="alice")
    async with running(worker):
        stored = await _result(queue, job.id, "Unknown")
    # WHEN its owner reads the pipeline
    view = await queue.view(job.id, "alice")
    # THEN it failed because of its first step, which it names when a letter says so
    assert stored.tries == 0
    assert [task_id for task_id, _ in runs.seen] == [job.steps[0]]
    assert view.status == "failed"
    assert view.error is not None and view.error["type"] == "DependencyFailed"
    expected = ("step validate_order failed: PermanentJobError: no such user" if policy
                else "an earlier step failed")
    assert view.error["message"] == expected


async def test_a_job_that_ran_reads_as_done_with_its_result_then_from_memory(
    queue: JobQueue, settings: Settings
) -> None:
    # GIVEN a job that ran
    runs = Runs()
    async with running(stand_in_worker(settings, {JOB: OK}, runs)):
        job = await queue.enqueue(JOB, PAYLOAD, owner="alice")
        # WHEN its owner waits for it, then reads it again
        view = await queue.wait(job.id, "alice", 10)
    started = asyncio.get_running_loop().time()
    again = await queue.view(job.id, "alice")
    # THEN it is done with its result; the second read is the remembered view, at once
    assert (view.status, view.result, view.tries) == ("done", {"ok": True}, 1)
    assert view.started_at is not None and view.finished_at is not None
    assert again == view
    assert asyncio.get_running_loop().time() - started < 0.05
    assert await queue.redis.ttl(queue.keys.outcome(job.id)) > 0


def test_old_metadata_without_the_published_flag_reads_as_published() -> None:
    # GIVEN metadata an earlier version wrote (no "published" field): its job was published
    raw = json.dumps({"name": JOB, "owner": "alice", "created_ms": now_ms(),
                      "payload": "{}", "digest": "x"})
    # THEN it reads as published, so no replay publishes it again
    assert JobMeta.from_json(raw).published
