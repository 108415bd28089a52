"""A real ``offload worker`` process writes its job metrics as EMF on stdout, which in ECS
is what the awslogs driver ships to CloudWatch (worker/job_metrics.py)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import anyio
import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.emf import parse
from tests.faults.jobs import wait_finished
from tests.integration.procs import WorkerProcess, reply, serving

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

JOB = "fetch_external_data"
NAMESPACE = "OffloadTest"


class Answers(BaseHTTPRequestHandler):
    """/ok: 200. /flaky: 500 the first time, 200 after. /missing: 404."""

    hits: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            seen = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status = {"/ok": 200, "/missing": 404}.get(self.path, 500 if seen == 1 else 200)
        reply(self, status, b"hello\n", "text/plain")

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def answering_server() -> Iterator[tuple[str, type[Answers]]]:
    handler = type("Handler", (Answers,), {"hits": {}, "lock": threading.Lock()})
    with serving(handler) as url:
        yield url, handler


async def _wait_for(worker: WorkerProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.output() and time.monotonic() < deadline:
        await anyio.sleep(0.1)


async def test_worker_writes_failures_dead_letters_durations_and_waits_as_emf(
    settings: Settings, tmp_path: Path
) -> None:
    # GIVEN a worker process with metrics on (as infra/worker.yaml sets them), written every
    # half second in a namespace of our choosing
    worker = WorkerProcess(settings, tmp_path / "w", OFFLOAD_WORKER_METRICS="true",
                           OFFLOAD_WORKER_METRICS_NAMESPACE=NAMESPACE,
                           OFFLOAD_WORKER_METRICS_INTERVAL_SECONDS="0.5")
    try:
        worker.wait_ready(settings)
        with answering_server() as (base, handler):
            async with JobQueue(settings) as queue:
                # WHEN it runs a job that succeeds, one that fails once then succeeds, and
                # one that fails for good
                ids = [(await queue.enqueue(JOB, {"url": f"{base}/{path}"}, owner="alice")).id
                       for path in ("ok", "flaky", "missing")]
                views = await wait_finished(queue, ids, "alice", timeout=30)
        assert [(v.status, v.tries) for v in views] == [("done", 1), ("done", 2), ("failed", 1)], \
            worker.output()
        assert handler.hits == {"/ok": 1, "/flaky": 2, "/missing": 1}
        # THEN the dead letter's metric is written while the worker keeps running
        await _wait_for(worker, '"DeadLetters"', timeout=10)
        assert '"DeadLetters"' in worker.output(), worker.output()
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, worker.output()
    finally:
        worker.stop()
    output = worker.log.read_text(errors="replace")
    emitted = parse(output)
    queue_name = settings.queue_name
    assert emitted.documents, output
    assert emitted.namespaces() == {NAMESPACE}
    # One failed try of each kind, by job and per queue
    for kind in ("transient", "permanent"):
        assert sum(emitted.of("JobsFailed", queue=queue_name, job=JOB, kind=kind)) == 1, kind
        assert sum(emitted.of("JobsFailed", queue=queue_name, kind=kind)) == 1, kind
    assert sum(emitted.of("DeadLetters", queue=queue_name, job=JOB)) == 1
    assert sum(emitted.of("DeadLetters", queue=queue_name)) == 1
    # Every finished try has a duration: ok, flaky twice, missing
    durations = emitted.of("JobDuration", queue=queue_name, job=JOB)
    assert len(durations) == 4
    assert all(0 <= ms < 30_000 for ms in durations)
    assert sorted(emitted.of("JobDuration", queue=queue_name)) == sorted(durations)
    # Each job waited once before its first try (a retry's backoff is not queue wait)
    waits = emitted.of("QueueWait", queue=queue_name, job=JOB)
    assert len(waits) == 3
    assert all(0 <= ms < 30_000 for ms in waits)
    # Nothing else: no other metric, dimension or dimension value
    assert {metric for metric, _ in emitted.values} == {
        "JobsFailed", "DeadLetters", "JobDuration", "QueueWait"}
    assert {name for _, dims in emitted.values for name, _ in dims} == {"queue", "job", "kind"}
    assert {value for _, dims in emitted.values for name, value in dims if name == "job"} == {JOB}
