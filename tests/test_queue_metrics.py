"""functions/queue_metrics through ``lambda_handler``: the EMF it prints (captured from stdout
and parsed) carries the backlog per task (jobs waiting or running over the worker service's
running ECS tasks, read from moto's ECS over HTTP), queue depth and oldest age, with the
queue name as the one dimension; with no task running, any job reads as work for one; with
a real worker, its prefetched and running jobs count; Redis is never SCANned."""

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
    # (no ECS service in the settings: the local stack, no worker live, so no task)
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
    # THEN it publishes, as EMF, depth = queued + due, and with no task running the whole
    # backlog per task (what wakes a first task)
    blob = metrics_blob(capsys.readouterr().out)
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Offload"
    assert directive["Dimensions"] == [["queue"]]
    assert blob["queue"] == settings.queue_name
    assert metric_units(blob) == {
        "BacklogPerTask": "Count", "QueueDepth": "Count", "OldestJobAgeSeconds": "Seconds",
        "RunningJobs": "Count", "LiveWorkers": "Count",
    }
    assert blob["QueueDepth"] == [4.0]
    assert blob["BacklogPerTask"] == [4.0]
    assert blob["LiveWorkers"] == [0.0]
    assert blob["RunningJobs"] == [0.0]
    assert 1.0 <= blob["OldestJobAgeSeconds"][0] < 30
    assert summary["scheduled"] == 1  # the one not yet due is not backlog


def test_empty_queue_publishes_zeros(
    container: LambdaContainer, capsys: pytest.CaptureFixture[str]
) -> None:
    container.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    blob = metrics_blob(capsys.readouterr().out)
    assert (blob["QueueDepth"], blob["BacklogPerTask"], blob["OldestJobAgeSeconds"]) == (
        [0.0], [0.0], [0.0])


@pytest.fixture
def ecs_service(settings: Settings) -> Iterator[tuple[Settings, Any]]:
    """The worker service in moto's ECS (over HTTP), named in the settings; and the client."""
    from shared.aws import ecs_client

    ecs = ecs_client(settings)
    cluster, service = f"cluster-{settings.queue_name}", f"worker-{settings.queue_name}"
    ecs.create_cluster(clusterName=cluster)
    family = ecs.register_task_definition(
        family=service,
        containerDefinitions=[{"name": "worker", "image": "offload:test", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=family,
                       desiredCount=0)
    yield settings.model_copy(update={"worker_cluster": cluster,
                                      "worker_service": service}), ecs
    ecs.delete_service(cluster=cluster, service=service, force=True)
    ecs.delete_cluster(cluster=cluster)


def test_backlog_is_jobs_per_running_ecs_task_and_wakes_from_zero(
    ecs_service: tuple[Settings, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    on_ecs, ecs = ecs_service
    box = LambdaContainer(on_ecs)
    try:
        # GIVEN seven jobs waiting and a service with no running task
        async def fill(q: Any) -> None:
            for _ in range(7):
                await q.enqueue("generate_sales_report", REPORT, owner="t")

        box.queue(fill)
        capsys.readouterr()
        # WHEN the metrics are read, THEN every job counts for the first task (wake-up)
        summary = box.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
        assert metrics_blob(capsys.readouterr().out)["BacklogPerTask"] == [7.0]
        assert summary["running_tasks"] == 0
        # ... and with three running tasks, ceil(7 / 3)
        ecs.update_service(cluster=on_ecs.worker_cluster, service=on_ecs.worker_service,
                           desiredCount=3)
        summary = box.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
        assert metrics_blob(capsys.readouterr().out)["BacklogPerTask"] == [3.0]
        assert summary["running_tasks"] == 3
    finally:
        box.close()


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_an_unknown_ecs_service_fails_without_publishing(
    ecs_service: tuple[Settings, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    on_ecs, _ = ecs_service
    box = LambdaContainer(on_ecs.model_copy(update={"worker_service": "not-there"}))
    try:
        with pytest.raises(LookupError, match="no ECS service not-there"):
            box.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    finally:
        box.close()
    assert '"BacklogPerTask"' not in capsys.readouterr().out


def test_reads_redis_without_scanning_the_keyspace(container: LambdaContainer) -> None:
    # GIVEN a queue with jobs in it
    async def fill(q: Any) -> None:
        for _ in range(3):
            await q.enqueue("generate_sales_report", REPORT, owner="t")

    container.queue(fill)

    def keyspace_reads() -> dict[str, int]:
        stats = container.queue(lambda q: q.redis.info("commandstats"))
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("scan", "keys")}

    before = keyspace_reads()
    # WHEN the minute's invocation runs (twice)
    for _ in range(2):
        container.invoke(queue_metrics.lambda_handler, {}, LambdaContext())
    # THEN Redis served no SCAN and no KEYS (the suite's Redis is private to this run)
    assert keyspace_reads() == before


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_with_a_busy_worker_running_and_prefetched_jobs_are_its_backlog(
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
    # THEN the eight running and the four waiting are the backlog of the one task (the
    # machine's live workers, without ECS)
    blob = metrics_blob(capsys.readouterr().out)
    assert blob["LiveWorkers"] == [1.0]
    assert blob["RunningJobs"] == [8.0]
    assert blob["QueueDepth"] == [4.0]
    assert blob["BacklogPerTask"] == [12.0]
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
