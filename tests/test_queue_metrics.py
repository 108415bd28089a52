"""functions/queue_metrics through ``lambda_handler``: the EMF it prints (captured from stdout
and parsed) carries queue depth, oldest age and backlog per worker, with the queue name as
the one dimension; with a real worker, its prefetched jobs still count as backlog."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions import queue_metrics
from infra.local.private_redis import free_port
from shared.config import Settings
from shared.errors import QueueUnavailable
from tests.test_api import LambdaContainer, LambdaContext, SlowHandler

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


def metrics_blob(out: str) -> dict[str, Any]:
    """The one EMF document the handler printed."""
    blobs: list[dict[str, Any]] = [
        json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert len(blobs) == 1
    return blobs[0]


def metric_units(blob: dict[str, Any]) -> dict[str, str]:
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    return {m["Name"]: m["Unit"] for m in directive["Metrics"]}


def test_depth_age_and_backlog_without_workers(
    container: LambdaContainer, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three queued jobs, one scheduled job now due and one due in an hour
    async def fill(q: Any) -> None:
        for _ in range(3):
            await q.enqueue("generate_sales_report", REPORT, owner="t")
        await q.enqueue("generate_sales_report", REPORT, owner="t", delay_seconds=1)
        await q.enqueue("generate_sales_report", REPORT, owner="t", delay_seconds=3600)

    container.queue(fill)
    time.sleep(1.3)
    capsys.readouterr()
    # WHEN the minute's invocation runs
    summary = container.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    # THEN it publishes, as EMF, depth = queued + due, and backlog over max(workers, 1)
    blob = metrics_blob(capsys.readouterr().out)
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Offload"
    assert directive["Dimensions"] == [["queue"]]
    assert blob["queue"] == settings.queue_name
    assert metric_units(blob) == {
        "QueueDepth": "Count", "OldestJobAgeSeconds": "Seconds", "BacklogPerWorker": "Count",
        "RunningJobs": "Count", "LiveWorkers": "Count",
    }
    assert blob["QueueDepth"] == [4.0]
    assert blob["BacklogPerWorker"] == [4.0]
    assert blob["LiveWorkers"] == [0.0]
    assert blob["RunningJobs"] == [0.0]
    assert 1.0 <= blob["OldestJobAgeSeconds"][0] < 30
    assert summary["scheduled"] == 1  # the one not yet due is not backlog


def test_empty_queue_publishes_zeros(
    container: LambdaContainer, capsys: pytest.CaptureFixture[str]
) -> None:
    container.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    blob = metrics_blob(capsys.readouterr().out)
    assert (blob["QueueDepth"], blob["BacklogPerWorker"], blob["OldestJobAgeSeconds"]) == (
        [0.0], [0.0], [0.0])


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_with_a_busy_worker_prefetched_jobs_are_still_backlog(
    container: LambdaContainer, worker: Any, origin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a worker running 8 slow jobs at once, with 4 more waiting (it prefetches them)
    async def fill(q: Any) -> None:
        for _ in range(12):
            await q.enqueue("fetch_external_data", {"url": f"{origin}/slow/2"}, owner="t")

    await container.aqueue(fill)
    deadline = time.monotonic() + 10
    while (await container.aqueue(lambda q: q.stats())).running < 8:
        assert time.monotonic() < deadline, "the worker never got busy"
        await asyncio.sleep(0.1)
    capsys.readouterr()
    # WHEN the metrics are read
    await container.ainvoke(queue_metrics.lambda_handler, {}, LambdaContext())
    # THEN the waiting four are the backlog of the one live worker
    blob = metrics_blob(capsys.readouterr().out)
    assert blob["LiveWorkers"] == [1.0]
    assert blob["RunningJobs"] == [8.0]
    assert blob["QueueDepth"] == [4.0]
    assert blob["BacklogPerWorker"] == [4.0]
    # let the jobs finish: the worker fixture's teardown cancels jobs still in flight
    while (stats := await container.aqueue(lambda q: q.stats())).running or stats.queued:
        assert time.monotonic() < deadline + 15, "the jobs never finished"
        await asyncio.sleep(0.2)


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_redis_down_fails_without_publishing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    box = LambdaContainer(dead)
    try:
        with pytest.raises(QueueUnavailable):
            box.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    finally:
        box.close()
    assert '"QueueDepth"' not in capsys.readouterr().out
