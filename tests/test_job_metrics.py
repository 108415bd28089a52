"""The worker's EMF job metrics (worker/job_metrics.py): what one flush writes, bounded
lines and dimensions, the background thread, and the setting that turns them on."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.emf import parse
from tests.faults.jobs import wait_finished
from worker.app import job_metrics
from worker.job_metrics import MAX_VALUES, OTHER_JOB, JobMetrics

JOB = "fetch_external_data"


def test_a_flush_writes_each_metric_per_job_and_per_queue() -> None:
    # GIVEN two transient failures, one permanent one that became a dead letter, and runs
    out = io.StringIO()
    metrics = JobMetrics("OffloadTest", "q1", out=out)
    metrics.failed(JOB, permanent=False)
    metrics.failed(JOB, permanent=False)
    metrics.failed(JOB, permanent=True)
    metrics.dead_lettered(JOB)
    for ms in (12.5, 40.0, 7.0):
        metrics.ran(JOB, ms)
    metrics.waited(JOB, 250.0)
    # WHEN they are written
    lines = metrics.flush()
    # THEN each series appears by job and again by queue (and kind), in one namespace
    emitted = parse(out.getvalue())
    assert lines == len(emitted.documents) == 3  # {job, kind} x 2 kinds, {job}
    assert emitted.namespaces() == {"OffloadTest"}
    assert emitted.of("JobsFailed", queue="q1", job=JOB, kind="transient") == [2.0]
    assert emitted.of("JobsFailed", queue="q1", kind="transient") == [2.0]
    assert emitted.of("JobsFailed", queue="q1", job=JOB, kind="permanent") == [1.0]
    assert emitted.of("JobsFailed", queue="q1", kind="permanent") == [1.0]
    assert emitted.of("DeadLetters", queue="q1", job=JOB) == [1.0]
    assert emitted.of("DeadLetters", queue="q1") == [1.0]
    assert emitted.of("JobDuration", queue="q1", job=JOB) == [12.5, 40.0, 7.0]
    assert emitted.of("JobDuration", queue="q1") == [12.5, 40.0, 7.0]
    assert emitted.of("QueueWait", queue="q1", job=JOB) == [250.0]
    units = {m["Name"]: m["Unit"] for d in emitted.documents
             for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"JobsFailed": "Count", "DeadLetters": "Count",
                     "JobDuration": "Milliseconds", "QueueWait": "Milliseconds"}
    # No service dimension sneaks in from POWERTOOLS_SERVICE_NAME.
    assert all("service" not in d for d in emitted.documents)
    # AND the buffer is empty afterwards
    assert metrics.flush() == 0


def test_task_names_outside_the_catalogue_share_one_dimension_value() -> None:
    out = io.StringIO()
    metrics = JobMetrics("Offload", "q", out=out)
    metrics.ran("bench_noop_1", 1.0)
    metrics.ran("an_operators_one_off", 2.0)
    metrics.flush()
    emitted = parse(out.getvalue())
    assert emitted.of("JobDuration", queue="q", job=OTHER_JOB) == [1.0, 2.0]
    assert {dict(dims).get("job") for _, dims in emitted.values} == {OTHER_JOB, None}


def test_many_values_are_spread_over_lines_of_bounded_size() -> None:
    # GIVEN more durations than one EMF value array may hold, and a count
    out = io.StringIO()
    metrics = JobMetrics("Offload", "offload-prod", out=out)
    for i in range(2 * MAX_VALUES + 7):
        metrics.ran(JOB, 1000.0 + i)
        metrics.waited(JOB, 123456.0 + i)
    metrics.dead_lettered(JOB)
    # WHEN written
    assert metrics.flush() == 3
    # THEN no line holds more than MAX_VALUES values of a metric, or more than a pipe
    # writes atomically, and nothing is lost or counted twice
    raw = out.getvalue().splitlines()
    assert all(len(line.encode()) < 4096 for line in raw)
    for line in raw:
        doc = json.loads(line)
        assert len(doc["JobDuration"]) <= MAX_VALUES
    emitted = parse(out.getvalue())
    assert len(emitted.of("JobDuration", queue="offload-prod", job=JOB)) == 2 * MAX_VALUES + 7
    assert len(emitted.of("QueueWait", queue="offload-prod")) == 2 * MAX_VALUES + 7
    assert emitted.of("DeadLetters", queue="offload-prod", job=JOB) == [1.0]


def _metric_threads() -> int:
    return sum(t.name == "job-metrics" for t in threading.enumerate())


def test_the_thread_writes_every_interval() -> None:
    out = io.StringIO()
    metrics = JobMetrics("Offload", "q", interval=0.05, out=out)
    metrics.start()
    try:
        metrics.failed(JOB, permanent=True)
        deadline = time.monotonic() + 5
        while not out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert parse(out.getvalue()).of("JobsFailed", queue="q", kind="permanent") == [1.0]
    finally:
        metrics.close()


def test_close_stops_the_thread_and_writes_what_is_left() -> None:
    # GIVEN a running writer whose interval never comes round during the test
    before = _metric_threads()
    out = io.StringIO()
    metrics = JobMetrics("Offload", "q", interval=3600, out=out)
    metrics.start()
    assert _metric_threads() == before + 1
    metrics.ran(JOB, 5.0)
    assert out.getvalue() == ""
    # WHEN it is closed (the worker's lifespan ends)
    metrics.close()
    # THEN the value is written and the thread is gone
    assert parse(out.getvalue()).of("JobDuration", queue="q") == [5.0]
    assert _metric_threads() == before


def test_metrics_are_off_unless_the_setting_turns_them_on() -> None:
    assert job_metrics(Settings()) is None
    on = job_metrics(Settings(worker_metrics=True, worker_metrics_namespace="Custom",
                              queue_name="offload-staging",
                              worker_metrics_interval_seconds=2.5))
    assert on is not None
    assert (on.namespace, on.queue, on.interval) == ("Custom", "offload-staging", 2.5)


@pytest.mark.anyio
async def test_a_stopping_worker_writes_what_it_measured(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a real worker with metrics on, whose interval never comes round during the test
    from infra.local.testing import running_worker

    on = settings.model_copy(update={"worker_metrics": True,
                                     "worker_metrics_interval_seconds": 3600.0})
    async with JobQueue(on) as queue, running_worker(on):
        job = await queue.enqueue("cleanup_expired_sessions", {}, owner="alice")
        (view,) = await wait_finished(queue, [job.id], "alice", timeout=30)
        assert view.status == "done", view
        assert "_aws" not in capsys.readouterr().out  # nothing written yet
        # WHEN the worker stops: leaving the block cancels it, as a lost Redis would
    # THEN the job's duration and wait were written on the way out
    emitted = parse(capsys.readouterr().out)
    assert len(emitted.of("JobDuration", queue=on.queue_name,
                          job="cleanup_expired_sessions")) == 1
    assert len(emitted.of("QueueWait", queue=on.queue_name)) == 1
    assert emitted.of("JobsFailed", queue=on.queue_name, kind="permanent") == []
