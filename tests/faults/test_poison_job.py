"""Fault 7: a poison job (its origin answers 503 forever, so every try fails transiently)
fails after its max tries, lands in dead letters with its reason, and the worker stays
healthy and keeps serving other jobs meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.config import Settings
from shared.jobs import CATALOGUE
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.jobs import enqueue_fetches, wait_finished
from tests.integration.procs import WorkerProcess
from worker.runner import check_health

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Handler(BaseHTTPRequestHandler):
    """``/broken``: 503 every time; anything else: 200. Counts requests per path."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status = 503 if self.path == "/broken" else 200
        body = b"unavailable" if status == 503 else b"ok"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def origin() -> Iterator[tuple[str, type[Handler]]]:
    handler = type("H", (Handler,), {"hits": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


async def test_poison_job_is_dead_lettered_and_the_worker_keeps_serving(
    settings: Settings, tmp_path: Path, origin: tuple[str, type[Handler]]
) -> None:
    base, handler = origin
    worker = WorkerProcess(settings, tmp_path / "w")
    try:
        worker.wait_ready(settings)
        async with JobQueue(settings) as queue:
            # GIVEN a job that always fails, among ordinary ones
            (poison,) = await enqueue_fetches(queue, [f"{base}/broken"], "poison")
            healthy = await enqueue_fetches(
                queue, [f"{base}/fine/{i}" for i in range(20)], "poison")
            # WHEN the worker has tried it as often as the catalogue allows
            good = await wait_finished(queue, healthy, "poison", 30)
            (bad,) = await wait_finished(queue, [poison], "poison", 40)
            letters = await queue.dead_letters("poison")
            # ... and is given more work afterwards
            later = await wait_finished(
                queue, await enqueue_fetches(queue, [f"{base}/later"], "poison"), "poison", 15)
        with ThreadPoolExecutor(1) as pool:
            healthy_now, message = pool.submit(check_health, settings, worker.state_dir).result()
        # THEN it failed for good after max tries, with its reason, as a dead letter
        max_tries = CATALOGUE["fetch_external_data"].max_tries
        assert bad.status == "failed"
        assert bad.error is not None and "503" in bad.error["message"]
        assert handler.hits["/broken"] == max_tries
        assert [(d.id, d.tries, d.error_type) for d in letters] == [
            (poison, max_tries, "TransientJobError")]
        assert "answered 503" in letters[0].error
        # ... and the worker served everything else and is healthy
        assert [v.status for v in good + later] == ["done"] * 21
        assert healthy_now, message
        assert worker.proc.poll() is None
        record("fault 7 poison job", tries=handler.hits["/broken"],
               dead_letter_reason=letters[0].error[:80], other_jobs_done=21,
               worker_healthy_after=healthy_now)
    finally:
        worker.stop()
