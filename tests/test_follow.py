"""GET /jobs/{id} follows a job: its progress mid-run (and a long-poll that wakes on it),
and presigned downloads of the files its result declares, fetched with a plain client."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from functions import container as lambda_state
from functions import outputs
from shared.blob_ref import BlobRef, find_blob_refs
from shared.config import Settings
from shared.queue import JobView, Keys, make_streaq
from shared.queue.progress import read_progress
from tests.test_api import SUB, Api, LambdaContainer, assert_error
from worker.progress import ProgressReporter, progress
from worker.retry_policy import RetryPolicy

OTHER = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
BODY = b"col,value\na,1\n"


@pytest.fixture
def box(settings: Settings) -> Iterator[LambdaContainer]:
    container = LambdaContainer(settings)
    yield container
    container.close()


# --- progress ------------------------------------------------------------------------------


class Gates:
    def __init__(self) -> None:
        self.half = anyio.Event()
        self.end = anyio.Event()


@pytest.fixture
async def staged_worker(settings: Settings) -> AsyncIterator[Gates]:
    """A worker with the retry policy whose ``fetch_external_data`` reports 25 %, waits,
    reports 50 %, waits, and finishes."""
    gates = Gates()
    worker = make_streaq(settings, handle_signals=False)
    RetryPolicy(worker, Keys(settings.queue_name), settings.result_retention_seconds, 3600)

    async def staged(**_: Any) -> dict[str, bool]:
        await progress(0.25, "first half")
        await gates.half.wait()
        await progress(0.5, "second half")
        await gates.end.wait()
        await progress(1.0, "done")
        return {"ok": True}

    worker.task(name="fetch_external_data", max_tries=1)(staged)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run_async)
        yield gates
        gates.half.set()
        gates.end.set()
        with anyio.move_on_after(5):
            while worker.running():
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_progress_is_visible_mid_job_and_wakes_a_progress_long_poll(
    box: LambdaContainer, staged_worker: Gates
) -> None:
    api = Api(box)
    job_id = (await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": "http://127.0.0.1/x"})).json["id"]
    # GIVEN the job is running and said how far it got
    deadline = time.monotonic() + 10
    job = (await api.acall("GET", f"/jobs/{job_id}")).json
    while job["progress"] is None and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        job = (await api.acall("GET", f"/jobs/{job_id}")).json
    assert job["status"] == "running"
    assert job["progress"]["fraction"] == 0.25
    assert job["progress"]["message"] == "first half"
    assert job["downloads"] == []
    # WHEN a long-poll waits for progress and the job moves on 1 s later
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        polled: dict[str, Any] = {}

        async def poll() -> None:
            polled.update((await api.acall(
                "GET", f"/jobs/{job_id}", query={"wait": "15", "wait_for": "progress"})).json)

        tg.start_soon(poll)
        await anyio.sleep(1)
        staged_worker.half.set()
    # THEN it returns on the change, with the job still running
    assert 0.9 < time.monotonic() - started < 5
    assert polled["status"] == "running"
    assert polled["progress"]["fraction"] == 0.5
    # AND a plain long-poll waits for the end, where progress is complete
    staged_worker.end.set()
    done = (await api.acall("GET", f"/jobs/{job_id}", query={"wait": "10"})).json
    assert done["status"] == "done"
    assert done["progress"]["fraction"] == 1.0
    assert datetime.fromisoformat(done["progress"]["updated_at"]) <= datetime.now(UTC)


@pytest.mark.anyio
async def test_progress_writes_are_throttled_but_the_end_is_always_written(
    queue: Any, settings: Settings
) -> None:
    keys = Keys(settings.queue_name)
    reporter = ProgressReporter(queue.redis, keys, "a" * 32, 60)
    assert await reporter.report(0.1, "one")
    assert not await reporter.report(0.2, "two")  # within 0.5 s of the last write
    stored = await read_progress(queue.redis, keys, "a" * 32)
    assert stored is not None and stored.message == "one"
    assert await reporter.report(1.0, "done")
    stored = await read_progress(queue.redis, keys, "a" * 32)
    assert stored is not None and stored.fraction == 1.0
    await anyio.sleep(0.55)
    assert await reporter.report(0.9, "later")
    assert 0 < await queue.redis.ttl(keys.progress("a" * 32)) <= 60
    with pytest.raises(ValueError, match="between 0 and 1"):
        await reporter.report(1.5, "too far")


# --- downloads -----------------------------------------------------------------------------


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/csv")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    server.shutdown()
    server.server_close()


@pytest.mark.anyio
async def test_a_result_file_downloads_with_a_plain_http_client(
    box: LambdaContainer, worker: Any, origin: str, settings: Settings
) -> None:
    api = Api(box)
    # GIVEN a finished job that wrote a file
    job_id = (await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": origin})).json["id"]
    before = datetime.now(UTC).replace(microsecond=0)
    job = (await api.acall("GET", f"/jobs/{job_id}", query={"wait": "10"})).json
    assert job["status"] == "done", job
    # THEN it offers the file, signed now for a stated while
    [download] = job["downloads"]
    assert download["name"] == "body"
    assert download["content_type"] == "text/csv"
    assert download["bytes"] == len(BODY)
    expires = datetime.fromisoformat(download["expires_at"])
    assert expires - before <= timedelta(seconds=outputs.DOWNLOAD_URL_SECONDS + 2)
    assert expires - before >= timedelta(seconds=outputs.DOWNLOAD_URL_SECONDS - 2)
    assert download["url"].startswith(settings.aws_endpoint_url or "-")
    assert f"X-Amz-Expires={outputs.DOWNLOAD_URL_SECONDS}" in download["url"]
    # AND a plain HTTP client fetches it from the URL
    with urllib.request.urlopen(download["url"], timeout=10) as response:
        assert response.read() == BODY
        assert 'filename="body"' in response.headers["Content-Disposition"]
    # AND the download route redirects to a fresh URL of the same object
    redirect = await api.acall("GET", f"/jobs/{job_id}/downloads/body")
    assert redirect.status == 302, redirect.text
    location = redirect.headers["Location"]
    with urllib.request.urlopen(location, timeout=10) as response:
        assert response.read() == BODY
    # AND nobody else, and no other name, gets one
    assert_error(await api.acall("GET", f"/jobs/{job_id}/downloads/body", sub=OTHER), 404,
                 "not_found")
    assert_error(await api.acall("GET", f"/jobs/{job_id}/downloads/other"), 404, "not_found")
    assert (await api.acall("GET", f"/jobs/{job_id}", sub=OTHER)).status == 404


def test_only_files_under_the_callers_prefix_in_the_results_bucket_are_offered(
    box: LambdaContainer, settings: Settings
) -> None:
    bucket = settings.results_bucket
    refs = [BlobRef("mine.csv", bucket, f"reports/{SUB}/a.csv", "text/csv", 3),
            BlobRef("theirs.csv", bucket, f"reports/{OTHER}/a.csv", "text/csv", 3),
            BlobRef("elsewhere.csv", "another-bucket", f"reports/{SUB}/a.csv", "text/csv", 3)]
    result = {"files": [ref.to_json() for ref in refs],
              "look-alike": {"bucket": bucket, "key": f"reports/{SUB}/b.csv"}}
    assert find_blob_refs(result) == refs
    view = JobView(id="b" * 32, name="generate_sales_report", status="done", tries=1,
                   enqueued_at=None, result=result)
    offered = box.invoke(lambda: outputs.owned_files(view, SUB))
    assert [ref.name for ref in offered] == ["mine.csv"]
    unfinished = JobView(id="b" * 32, name="generate_sales_report", status="running",
                         tries=1, enqueued_at=None, result=result)
    assert box.invoke(lambda: outputs.owned_files(unfinished, SUB)) == []
    assert box.invoke(lambda: lambda_state.settings().results_bucket) == bucket
