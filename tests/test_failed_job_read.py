"""A job that failed with a worker-only library's exception reads from a Lambda artifact.

The failure here is real: a real worker runs ``fetch_external_data`` against a local host
that answers ``Content-Encoding: gzip`` with bytes that are not gzip, so httpx (a worker-only
library) raises ``DecodingError``. The API then runs in a subprocess that cannot import any
worker-only library (an import hook refuses them, as their absence from the Lambda artifact
would), and must answer ``GET``, ``DELETE`` and an idempotent replay of that job, never 500.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared.config import Settings
from tests.integration.procs import settings_env

pytestmark = pytest.mark.anyio

# What the Lambda artifact holds none of ([project].dependencies only), nor worker code.
WORKER_ONLY = ["httpx", "pymongo", "beanie", "PIL", "fpdf", "pillow_heif", "pyvips", "worker"]

# Run in the subprocess: refuse the worker-only imports, then call the API handler once per
# request given on stdin (one JSON event per line) and print each answer as a JSON line.
API_WITHOUT_WORKER_LIBRARIES = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv[1]))

class RefuseWorkerOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the Lambda artifact")
        return None

sys.meta_path.insert(0, RefuseWorkerOnly())
from functions.api import lambda_handler

class Context:
    function_name = "offload-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:offload-api"
    aws_request_id = "req"
    def get_remaining_time_in_millis(self):
        return 30000

for line in sys.stdin:
    answer = lambda_handler(json.loads(line), Context())
    print(json.dumps({"status": answer["statusCode"], "body": answer.get("body")}), flush=True)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"loaded": loaded}), flush=True)
"""


class BrokenGzip(BaseHTTPRequestHandler):
    """Every GET: a body that claims to be gzip and is not."""

    def do_GET(self) -> None:
        body = b"this is not a gzip stream at all" * 8
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def broken_gzip_host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenGzip)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/data.json"
    finally:
        server.shutdown()
        server.server_close()


def api_in_a_lambda_artifact(settings: Settings, events: list[dict[str, Any]]) -> list[Any]:
    """Each event through ``functions.api`` in a process without worker-only libraries."""
    done = subprocess.run(
        [sys.executable, "-c", API_WITHOUT_WORKER_LIBRARIES, json.dumps(WORKER_ONLY)],
        input="".join(json.dumps(e) + "\n" for e in events),
        env=settings_env(settings, POWERTOOLS_TRACE_DISABLED="1"),
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    answers = [line for line in lines if "status" in line]
    assert lines[-1] == {"loaded": []}, "a worker-only library was imported"
    return answers


async def test_a_job_failed_by_a_worker_only_library_reads_without_it(
    settings: Settings, worker: Any, queue: Any, broken_gzip_host: str
) -> None:
    from tests.test_api import SUB, http_event

    # GIVEN a job that a real worker failed with httpx's DecodingError
    key = "broken-gzip-1"
    job = await queue.enqueue("fetch_external_data", {"url": broken_gzip_host}, owner=SUB,
                              idempotency_key=key)
    with anyio.fail_after(60):
        view = await queue.wait(job.id, SUB, 50)
    assert view.status == "failed"
    assert view.error is not None and view.error["type"] == "DecodingError"
    # WHEN the API, with none of the worker's libraries, reads it, replays it and aborts it
    replay = {"url": broken_gzip_host}
    get, again, delete = api_in_a_lambda_artifact(settings, [
        http_event("GET", f"/jobs/{job.id}"),
        http_event("POST", "/jobs/fetch_external_data", body=replay,
                   headers={"Idempotency-Key": key, "content-type": "application/json"}),
        http_event("DELETE", f"/jobs/{job.id}"),
    ])
    # THEN each answers with the stored record, never a 500
    assert get["status"] == 200, get
    read = json.loads(get["body"])
    assert read["status"] == "failed"
    assert read["error"]["type"] == "DecodingError"
    assert read["error"]["message"]
    assert again["status"] == 202, again
    assert json.loads(again["body"])["id"] == job.id
    assert delete["status"] == 409, delete
    assert json.loads(delete["body"])["error"]["code"] == "conflict"
