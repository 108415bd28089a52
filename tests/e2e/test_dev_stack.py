"""End to end: ``offload dev`` as a subprocess on free ports, driven over HTTP only.

One stack for the module (it takes a while to start on two cores); the tests run in file
order and the last one stops it and checks that nothing it started is still running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra.local.client import ApiCallError, ApiClient, post_presigned
from infra.local.samples import (
    BLUE,
    GREEN,
    RED,
    close_to,
    describe_picture,
    exif_rotated_jpeg,
    expected_thumbnail_size,
    phone_avif,
    phone_heic,
    transparent_png,
)
from infra.local.state import StackState, pid_alive
from infra.local.supervisor import marked_pids

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 150.0
JOB_TIMEOUT = 60.0


@dataclass
class RunningStack:
    proc: subprocess.Popen[bytes]
    state: StackState
    state_dir: Path
    log: Path

    def client(self, token: str | None = "dev") -> ApiClient:
        chosen = self.state.token if token == "dev" else token
        return ApiClient(self.state.api_url, chosen)

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.state.aws_endpoint_url,
                            region_name=self.state.env["OFFLOAD_AWS_REGION"],
                            aws_access_key_id="x", aws_secret_access_key="x")

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OFFLOAD_STATE_DIR": str(self.state_dir)}
        return subprocess.run([sys.executable, "-m", "offload.cli", *args], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    state_dir = tmp_path_factory.mktemp("offload-state")
    log = state_dir / "dev.log"
    # A private redis-server and the in-memory MongoDB, whatever the caller's environment.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI")}
    env["OFFLOAD_STATE_DIR"] = str(state_dir)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload.cli", "dev", "--port", "0", "--ui-port", "0",
             "--workers", "1", "--exit-with-parent"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        running = RunningStack(proc, _wait_for_state(proc, state_dir, log), state_dir, log)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _wait_for_state(proc: subprocess.Popen[bytes], state_dir: Path, log: Path) -> StackState:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = StackState.load(state_dir / "dev.json")
        if state is not None:
            return state
        if proc.poll() is not None:
            pytest.fail(f"offload dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        time.sleep(0.25)
    pytest.fail(f"offload dev was not up after {START_TIMEOUT:.0f} s:\n{log.read_text()[-4000:]}")


def _wait_done(client: ApiClient, job_id: str, stack: RunningStack,
               timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
    """Poll until the job finished; a 404 means its S3 event has not been handled yet."""
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            view = client.status(job_id)
        except ApiCallError as exc:
            if exc.status != 404:
                raise
        if view.get("status") in ("done", "failed", "aborted", "expired"):
            return view
        time.sleep(0.3)
    pytest.fail(f"job {job_id} not finished after {timeout} s: {view}\n{stack.log_tail()}")


# --- the gateway's authorizer ------------------------------------------------------------


def test_without_a_token_the_gateway_answers_401_like_api_gateway(stack: RunningStack) -> None:
    # GIVEN no token, a token nobody issued, and the open health route
    anonymous = httpx.post(f"{stack.state.api_url}/jobs/send_welcome_email", json={})
    forged = httpx.get(f"{stack.state.api_url}/jobs/{'0' * 32}",
                       headers={"authorization": "Bearer not-a-dev-token"})
    health = httpx.get(f"{stack.state.api_url}/health")

    # THEN the authorizer refuses both before the handler runs; /health needs no token
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "Unauthorized"}
    assert forged.status_code == 401
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


# --- upload -> S3 event -> job -> thumbnails ---------------------------------------------


def test_uploads_become_thumbnails_with_the_right_size_orientation_and_alpha(
    stack: RunningStack,
) -> None:
    side = 256
    photo, logo = exif_rotated_jpeg(), transparent_png()
    with stack.client() as client:
        # WHEN both images go through POST /uploads and the presigned POST
        job_ids = {}
        for sample in (photo, logo):
            upload = client.create_upload(sample.filename, sample.content_type, len(sample.data))
            post_presigned(upload, sample.filename, sample.data, sample.content_type)
            job_ids[sample.filename] = upload["job_id"]
        # THEN the S3 event makes each a job under the id the API promised, and it succeeds
        views = {name: _wait_done(client, job_id, stack) for name, job_id in job_ids.items()}

    s3 = stack.s3()
    results = stack.state.env["OFFLOAD_RESULTS_BUCKET"]
    pictures = {}
    for name, view in views.items():
        assert view["status"] == "done", view
        thumbnail = s3.get_object(Bucket=results, Key=view["result"]["variants"]["thumbnail"])
        pictures[name] = describe_picture(thumbnail["Body"].read())

    # The EXIF-rotated photo displays portrait with red on top; so must its thumbnail.
    shot = pictures[photo.filename]
    assert shot.size == expected_thumbnail_size(photo.display_size, side)
    assert close_to(shot.top, RED), shot
    assert not close_to(shot.top, BLUE)
    assert views[photo.filename]["result"]["width"] == photo.display_size[0]
    # The PNG keeps its transparency: clear corner, opaque green disc.
    mark = pictures[logo.filename]
    assert mark.size == expected_thumbnail_size(logo.display_size, side)
    assert mark.mode == "RGBA"
    assert mark.corner[3] == 0
    assert close_to(describe_center(s3, results, views[logo.filename]), GREEN)


def test_phone_formats_become_thumbnails(stack: RunningStack) -> None:
    # GIVEN the photo as an iPhone's HEIC (stored turned, EXIF Orientation 6) and as AVIF
    side = 256
    samples = (phone_heic(), phone_avif())
    with stack.client() as client:
        # WHEN each goes through POST /uploads (its own content type) and the presigned POST
        job_ids = {}
        for sample in samples:
            upload = client.create_upload(sample.filename, sample.content_type, len(sample.data))
            post_presigned(upload, sample.filename, sample.data, sample.content_type)
            job_ids[sample.filename] = upload["job_id"]
        # THEN the S3 event makes each a job, and it succeeds
        views = {name: _wait_done(client, job_id, stack) for name, job_id in job_ids.items()}
    s3 = stack.s3()
    results = stack.state.env["OFFLOAD_RESULTS_BUCKET"]
    for sample in samples:
        view = views[sample.filename]
        assert view["status"] == "done", view
        assert (view["result"]["width"], view["result"]["height"]) == sample.display_size
        thumbnail = s3.get_object(Bucket=results, Key=view["result"]["variants"]["thumbnail"])
        picture = describe_picture(thumbnail["Body"].read())
        # ... a WebP thumbnail, portrait with red on top (upright, whichever way stored)
        assert (picture.format, picture.size) == (
            "WEBP", expected_thumbnail_size(sample.display_size, side))
        assert close_to(picture.top, RED), (sample.filename, picture)


def describe_center(s3: Any, bucket: str, view: dict[str, Any]) -> tuple[int, ...]:
    from io import BytesIO

    from PIL import Image

    body = s3.get_object(Bucket=bucket, Key=view["result"]["variants"]["thumbnail"])["Body"]
    with Image.open(BytesIO(body.read())) as image:
        rgba = image.convert("RGBA")
        pixel = rgba.getpixel((rgba.width // 2, rgba.height // 2))
        assert isinstance(pixel, tuple)
        return pixel


# --- a report job: CSV and PDF in the results bucket -------------------------------------


def test_sales_report_writes_csv_and_pdf(stack: RunningStack) -> None:
    today = datetime.now(UTC).date()
    with stack.client() as client:
        body = client.enqueue("generate_sales_report",
                              {"start_date": str(today - timedelta(days=3)),
                               "end_date": str(today)})
        assert body["status"] in ("queued", "running", "done")
        view = _wait_done(client, body["id"], stack)

    assert view["status"] == "done", view
    result = view["result"]
    s3 = stack.s3()
    csv = s3.get_object(Bucket=result["bucket"], Key=result["csv_key"])
    pdf = s3.get_object(Bucket=result["bucket"], Key=result["pdf_key"])
    assert csv["Body"].read().decode().splitlines()[0].count(",") >= 2
    assert pdf["Body"].read().startswith(b"%PDF-")


# --- abort a job while it runs -----------------------------------------------------------


def test_a_running_slow_job_can_be_aborted(stack: RunningStack) -> None:
    slow = f"{stack.state.fixtures_url}/slow?seconds=60"
    with stack.client() as client:
        job_id = client.enqueue("fetch_external_data", {"url": slow})["id"]
        deadline = time.monotonic() + 20
        while client.status(job_id)["status"] != "running":
            assert time.monotonic() < deadline, stack.log_tail()
            time.sleep(0.2)

        client.abort(job_id)
        view = _wait_done(client, job_id, stack, timeout=15)

    assert view["status"] == "aborted", view


# --- ownership, as with a real JWT authorizer --------------------------------------------


def test_another_caller_cannot_see_or_abort_my_job(stack: RunningStack) -> None:
    other = next(iter(stack.state.other_tokens))
    with stack.client() as mine, stack.client(other) as theirs:
        job_id = mine.enqueue("fetch_external_data",
                              {"url": f"{stack.state.fixtures_url}/rates.json"})["id"]
        with pytest.raises(ApiCallError) as seen:
            theirs.status(job_id)
        with pytest.raises(ApiCallError) as aborted:
            theirs.abort(job_id)
        assert _wait_done(mine, job_id, stack)["status"] == "done"
    assert seen.value.status == 404
    assert aborted.value.status == 404


# --- the CLI and the scheduler against the running stack ---------------------------------


def test_cli_enqueue_wait_and_fire_a_schedule(stack: RunningStack) -> None:
    data = json.dumps({"url": f"{stack.state.fixtures_url}/rates.json"})
    enqueued = stack.cli("enqueue", "fetch_external_data", "--data", data, "--wait")
    assert enqueued.returncode == 0, enqueued.stderr
    assert '"status": "done"' in enqueued.stdout

    fired = stack.cli("fire", "cleanup_expired_sessions")
    assert fired.returncode == 0, fired.stdout + fired.stderr
    assert '"enqueued": true' in fired.stdout

    missing = stack.cli("fire", "no_such_schedule")
    assert missing.returncode == 2
    assert "no schedule named 'no_such_schedule'" in missing.stderr


# --- the demo itself ---------------------------------------------------------------------


def test_demo_succeeds_against_the_running_stack(stack: RunningStack, tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    demo = stack.cli("demo", "--output", str(out), "--timeout", "90", timeout=150)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    assert "every job succeeded" in demo.stdout
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "thumbnails/holiday photo (1).thumbnail.webp" in written
    assert "reports/sales.csv" in written
    assert "reports/sales.pdf" in written


# --- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_stops_everything_within_seconds(stack: RunningStack) -> None:
    pids = dict(stack.state.pids)
    started = time.monotonic()
    stack.proc.send_signal(signal.SIGINT)
    code = stack.proc.wait(timeout=15)
    took = time.monotonic() - started

    assert code == 0, stack.log_tail()
    assert took < 10, f"stopping took {took:.1f} s"
    assert marked_pids(stack.state.stack_id) == []
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert not (stack.state_dir / "dev.json").exists()
