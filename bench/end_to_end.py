"""Benchmark 6: an upload, end to end, through ``offload dev``.

For 1 and then 2 worker processes, a fresh ``offload dev`` stack (its own state dir, free
ports) takes photo-like 12 MP JPEG uploads one at a time: ``POST /uploads``, then the
presigned POST to (moto's) S3, whose notification reaches ``functions.s3_events`` through
SQS, which enqueues ``process_uploaded_image``; a worker downloads the object, writes
both WebP variants and records the Image. The latency runs from the start of the
presigned POST until the thumbnail is in the results bucket (polled with HEAD every
10 ms; the job stores the thumbnail while the large variant is still encoding, and is
done when both are stored). After
each upload the same bytes go through :func:`worker.imaging.process_image` alone, in a
benchmark child process, so the ratio compares measurements taken minutes apart at most.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import inputs
from bench.image_job import _command, _env
from bench.procs import ROOT, Child, clean_env
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, percentile, ratio

INPUT = "12mp_jpeg"
POLL_SECONDS = 0.01
STACK_TIMEOUT = 180.0
UPLOAD_TIMEOUT = 60.0
RATIO_LIMIT = 1.3


class Stack:
    """``offload dev --workers N`` on free ports, with a state dir of its own."""

    def __init__(self, workers: int, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "stack.log"
        env = clean_env(OFFLOAD_STATE_DIR=str(directory))
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "offload.cli", "dev", "--port", "0", "--ui-port", "0",
                 "--workers", str(workers), "--exit-with-parent"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.state = self._wait_until_up()

    def _wait_until_up(self) -> Any:
        from infra.local.state import StackState

        deadline = time.monotonic() + STACK_TIMEOUT
        while time.monotonic() < deadline:
            state = StackState.load(self.directory / "dev.json")
            if state is not None and state.supervisor_pid == self.proc.pid:
                return state
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError("offload dev did not come up:\n" + "\n".join(tail))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _s3(state: Any) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=state.aws_endpoint_url,
        region_name=state.env.get("OFFLOAD_AWS_REGION", "eu-west-1"),
        aws_access_key_id="bench", aws_secret_access_key="bench",  # moto takes any
    )


def _upload(state: Any, api: Any, s3: Any, data: bytes, n: int) -> dict[str, float]:
    """One upload; seconds from the presigned POST to the thumbnail in S3."""
    from botocore.exceptions import ClientError

    from infra.local.client import post_presigned

    start_api = time.perf_counter()
    upload = api.create_upload(f"photo-{n}.jpg", "image/jpeg", len(data))
    start = time.perf_counter()
    post_presigned(upload, f"photo-{n}.jpg", data, "image/jpeg")
    posted, posted_wall = time.perf_counter(), time.time()
    owner, upload_id = upload["key"].split("/")[1:3]
    key = f"images/{owner}/{upload_id}/thumbnail.webp"
    bucket = state.env["OFFLOAD_RESULTS_BUCKET"]
    deadline = start + UPLOAD_TIMEOUT
    while time.perf_counter() < deadline:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            time.sleep(POLL_SECONDS)
            continue
        done = time.perf_counter()
        sample = {"ms": (done - start) * 1000, "post_ms": (posted - start) * 1000,
                  "api_ms": (start - start_api) * 1000}
        sample.update(_stages(api.wait(upload["job_id"], UPLOAD_TIMEOUT, 0.05), posted_wall))
        return sample
    raise RuntimeError(f"no thumbnail {key} after {UPLOAD_TIMEOUT:.0f} s (job "
                       f"{upload.get('job_id')}); see the stack log")


def _stages(job: dict[str, Any], posted_wall: float) -> dict[str, float]:
    """Where the time went, from the job's own timestamps (the stack's clock is ours)."""
    from datetime import datetime

    def at(field: str) -> float:
        value = job.get(field)
        return datetime.fromisoformat(value).timestamp() if value else float("nan")

    return {"to_enqueue_ms": (at("enqueued_at") - posted_wall) * 1000,
            "queued_ms": (at("started_at") - at("enqueued_at")) * 1000,
            "job_ms": (at("finished_at") - at("started_at")) * 1000}


def _one_stack(workers: int, uploads: int, warm: int, data: bytes, path: Path,
               child: Child, workdir: Path) -> dict[str, Any]:
    from infra.local.client import ApiClient

    stack = Stack(workers, workdir / f"stack-{workers}")
    samples: list[dict[str, float]] = []
    alone: list[float] = []
    try:
        s3 = _s3(stack.state)
        with ApiClient(stack.state.api_url, stack.state.token) as api:
            for n in range(warm):  # first invocations import handlers, open clients
                _upload(stack.state, api, s3, data, n)
            for n in range(uploads):
                samples.append(_upload(stack.state, api, s3, data, 100 + n))
                alone += child.call("time", input=str(path))["ms"]
            s3_ms = _s3_round_trips(stack.state, s3, data)
    finally:
        stack.stop()
    return {"workers": workers, "samples": samples, "alone_ms": alone, "s3_ms": s3_ms}


def _s3_round_trips(state: Any, s3: Any, data: bytes) -> dict[str, float]:
    """What the job's own S3 calls cost against this stack's S3 (moto): a GET of the
    upload, a PUT of a 150 KB variant (median of 5 each)."""
    bucket = state.env["OFFLOAD_RESULTS_BUCKET"]
    variant = data[:150_000]
    s3.put_object(Bucket=bucket, Key="bench/source.jpg", Body=data)
    get_ms, put_ms = [], []
    for i in range(5):
        start = time.perf_counter()
        s3.get_object(Bucket=bucket, Key="bench/source.jpg")["Body"].read()
        get_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=f"bench/variant-{i}.webp", Body=variant)
        put_ms.append((time.perf_counter() - start) * 1000)
    return {"get_upload_ms": median(get_ms), "put_150kb_ms": median(put_ms)}


def run(config: BenchConfig) -> BenchResult:
    uploads, warm, worker_counts = (3, 1, (1,)) if config.quick else (30, 3, (1, 2))
    path = inputs.make_inputs(inputs.cache_dir(), [INPUT])[INPUT]
    data = path.read_bytes()
    runs = []
    with Child(_command("offload", "serve", "offload"), _env()) as child:
        child.call("info")
        child.call("time", input=str(path))
        for workers in worker_counts:
            runs.append(_one_stack(workers, uploads, warm, data, path, child,
                                   config.workdir))
    rows, goals = [], []
    for run_ in runs:
        ms = [s["ms"] for s in run_["samples"]]
        alone = median(run_["alone_ms"])
        p50 = percentile(ms, 50)
        stage = {k: median([s[k] for s in run_["samples"]])
                 for k in ("post_ms", "api_ms", "to_enqueue_ms", "queued_ms", "job_ms")}
        rows.append([run_["workers"], len(ms), p50, percentile(ms, 95), stage["api_ms"],
                     stage["post_ms"], stage["to_enqueue_ms"], stage["queued_ms"],
                     stage["job_ms"], alone, ratio(p50, alone)])
        goals.append(Goal(f"{run_['workers']} worker(s): p50 <= {RATIO_LIMIT}x the image job "
                          "alone", f"{p50:.0f} ms vs {alone:.0f} ms = {ratio(p50, alone):.2f}x",
                          ratio(p50, alone) <= RATIO_LIMIT))
    return BenchResult(
        name="end_to_end",
        title=f"6. End to end through offload dev ({INPUT}: presigned POST -> thumbnail "
              "in S3)",
        headers=["workers", "uploads", "p50 ms", "p95 ms", "POST /uploads ms",
                 "S3 POST ms", "S3 POST done -> enqueued ms", "queued ms", "job run ms",
                 "image job alone ms", "p50 x alone"],
        rows=rows, goals=goals,
        notes=[f"uploads one at a time after {warm} warm-up upload(s); S3 polled every "
               f"{POLL_SECONDS * 1000:.0f} ms; stage columns are medians, from the job's "
               "enqueued/started/finished times (POST /uploads is not in the latency)",
               "the stack's S3 (moto), from the benchmark: GET of the 2.5 MB upload "
               + ", ".join(f"{r['s3_ms']['get_upload_ms']:.0f}" for r in runs)
               + " ms, PUT of 150 KB "
               + ", ".join(f"{r['s3_ms']['put_150kb_ms']:.0f}" for r in runs) + " ms"],
        data={"runs": runs},
    )
