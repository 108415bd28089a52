"""The retry policy on tasks outside the job catalogue: they run under it with the options
they were registered with (a benchmark's no-op job, an operator's one-off task)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from streaq import Worker

from shared.config import Settings
from shared.errors import PermanentJobError
from shared.jobs import CATALOGUE
from shared.queue import Keys, make_streaq, now_ms
from shared.queue.wire import JobFailure
from worker.retry_policy import Rules, rules_for


def test_catalogue_jobs_follow_the_catalogue() -> None:
    spec = CATALOGUE["process_uploaded_image"]
    bare: Worker[Any] = Worker(redis_url="redis://127.0.0.1:1/0")
    assert rules_for(bare, spec.name) == Rules(spec.name, spec.max_tries, spec.timeout_seconds)


def test_other_tasks_follow_their_registration() -> None:
    # GIVEN tasks registered with and without options
    w: Worker[Any] = Worker(redis_url="redis://127.0.0.1:1/0")

    @w.task(name="with_options", max_tries=2, timeout=timedelta(seconds=5))
    async def with_options() -> None: ...

    @w.task(name="without_options", max_tries=None, timeout=None)
    async def without_options() -> None: ...

    # THEN their rules are what they were registered with (no max_tries: a single try)
    assert rules_for(w, "with_options") == Rules("with_options", 2, 5.0)
    assert rules_for(w, "without_options") == Rules("without_options", 1, None)
    with pytest.raises(KeyError):
        rules_for(w, "never_registered")


@pytest.fixture
async def policy_worker(settings: Settings, mongo: Any) -> AsyncIterator[Worker[Any]]:
    from worker.app import build_worker

    w = build_worker(settings, concurrency=4)
    calls: list[int] = []

    @w.task(name="flaky", max_tries=2)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    @w.task(name="slow")
    async def slow() -> str:
        await anyio.sleep(1.0)
        return "slow ok"

    @w.task(name="quick")
    async def quick() -> str:
        return "quick ok"

    @w.task(name="always_fails", max_tries=2)
    async def always_fails() -> None:
        raise ConnectionError("origin unreachable")

    @w.task(name="refused", max_tries=3)
    async def refused() -> None:
        raise PermanentJobError("not a valid order")

    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        yield w
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_non_catalogue_task_runs_and_retries_under_the_policy(
    settings: Settings, policy_worker: Worker[Any]
) -> None:
    # GIVEN a task outside the catalogue that fails its first try
    client = make_streaq(settings)
    async with client:
        # WHEN it is enqueued
        task = client.enqueue_unsafe("flaky")
        await task
        result = await client.result_by_id(task.id, timeout=timedelta(seconds=20))
    # THEN the policy retried it (with backoff) and it succeeded on its second try
    assert result.success, result
    assert result.result == "ok"
    assert result.tries == 2


@pytest.mark.anyio
async def test_only_a_run_that_lasts_records_its_start_and_try(
    settings: Settings, policy_worker: Worker[Any]
) -> None:
    keys = Keys(settings.queue_name)
    client = make_streaq(settings)
    async with client:
        # GIVEN a job that runs for a second and one that returns at once
        slow, quick = client.enqueue_unsafe("slow"), client.enqueue_unsafe("quick")
        before_ms = now_ms()
        await slow
        await quick
        # WHEN the slow one has been running for a while
        progress: dict[str, str] = {}
        with anyio.fail_after(5):
            while not progress:
                await anyio.sleep(0.02)
                progress = await client.redis.hgetall(keys.job(slow.id) + ":run")
        # THEN its run record says when it started and which try it is on
        assert progress["tries"] == "1"
        assert before_ms <= int(progress["started_ms"]) <= now_ms() - 50
        slow_result = await client.result_by_id(slow.id, timeout=timedelta(seconds=10))
        quick_result = await client.result_by_id(quick.id, timeout=timedelta(seconds=10))
        # ... while the quick one finished without writing any
        assert not await client.redis.exists([keys.job(quick.id) + ":run"])
    assert (slow_result.result, quick_result.result) == ("slow ok", "quick ok")


@pytest.mark.anyio
async def test_the_correlation_id_travels_in_the_message_to_the_worker_log(
    settings: Settings, policy_worker: Worker[Any], caplog: pytest.LogCaptureFixture
) -> None:
    from shared.queue import JobQueue

    caplog.set_level(logging.INFO, logger="offload.worker")
    async with JobQueue(settings) as queue:
        # GIVEN a job enqueued for a request
        job = await queue.enqueue("cleanup_expired_sessions", {"older_than_hours": 24},
                                  owner="alice", correlation_id="req-42")
        # WHEN it runs
        view = await queue.wait(job.id, "alice", timeout=10)
    # THEN it ran with its input alone (the context is not an input field: the input model
    # refuses unknown fields), and its run was logged with the request's id
    assert view.status == "done", view
    assert f"job cleanup_expired_sessions {job.id} try 1/" in caplog.text
    assert "correlation_id=req-42" in caplog.text


@pytest.mark.anyio
async def test_a_final_failure_is_stored_with_whether_it_was_retryable_and_its_tries(
    settings: Settings, policy_worker: Worker[Any]
) -> None:
    client = make_streaq(settings)
    async with client:
        # GIVEN a task that fails transiently every time and one refused outright
        transient = client.enqueue_unsafe("always_fails")
        permanent = client.enqueue_unsafe("refused")
        await transient
        await permanent
        # WHEN they have failed for good
        gave_up = await client.result_by_id(transient.id, timeout=timedelta(seconds=20))
        refused = await client.result_by_id(permanent.id, timeout=timedelta(seconds=20))
    # THEN each failure record says what it was, whether a retry could help, and after
    # how many tries it was given up
    assert not gave_up.success and not refused.success
    assert isinstance(gave_up.exception, JobFailure)
    assert isinstance(refused.exception, JobFailure)
    assert gave_up.exception.record() == {"type": "ConnectionError",
                                          "message": "origin unreachable",
                                          "retryable": True, "tries": 2}
    assert refused.exception.record() == {"type": "PermanentJobError",
                                          "message": "not a valid order",
                                          "retryable": False, "tries": 1}
