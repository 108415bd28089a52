"""Real ``offload worker`` processes: drain on SIGTERM, re-run after SIGKILL, health check."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.integration.procs import WorkerProcess, settings_env, slow_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _wait_status(queue: JobQueue, job_id: str, owner: str, wanted: str,
                       timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = (await queue.view(job_id, owner)).status
        if status == wanted:
            return status
        await anyio.sleep(0.05)
    return status


async def test_sigterm_lets_the_running_job_finish_then_exits_0(
    settings: Settings, tmp_path: Path
) -> None:
    # GIVEN a worker with a 5 s grace period running a 2 s job
    worker = WorkerProcess(settings, tmp_path / "w1")
    try:
        worker.wait_ready(settings)
        with slow_server() as (base, handler):
            async with JobQueue(settings) as queue:
                job = await queue.enqueue(
                    "fetch_external_data", {"url": f"{base}/slow/2"}, owner="alice"
                )
                assert await _wait_status(queue, job.id, "alice", "running", 10) == "running"
                # WHEN it receives SIGTERM mid-job
                worker.signal(signal.SIGTERM)
                code = worker.wait(timeout=15)
                view = await queue.view(job.id, "alice")
        # THEN the job completed within the grace period and the process exited cleanly
        assert code == 0, worker.output()
        assert view.status == "done", (view, worker.output())
        assert handler.hits == {"/slow/2": 1}
    finally:
        worker.stop()


async def test_sigkill_mid_job_is_rerun_by_another_worker(
    settings: Settings, tmp_path: Path
) -> None:
    # Reclaim after 2 s of silence instead of 60 s, so the test is quick.
    fast = settings.model_copy(update={"worker_idle_timeout_seconds": 2.0})
    first = WorkerProcess(fast, tmp_path / "a")
    second: WorkerProcess | None = None
    try:
        first.wait_ready(fast)
        with slow_server() as (base, handler):
            async with JobQueue(fast) as queue:
                job = await queue.enqueue(
                    "fetch_external_data", {"url": f"{base}/slow/1.5"}, owner="bob"
                )
                # wait until the job is mid-request (it has reached the server)
                with anyio.fail_after(15):
                    while handler.hits.get("/slow/1.5", 0) < 1:
                        await anyio.sleep(0.02)
                # WHEN the worker running it dies without warning
                first.signal(signal.SIGKILL)
                first.wait(timeout=5)
                second = WorkerProcess(fast, tmp_path / "b")
                second.wait_ready(fast)
                # THEN another worker reclaims it after the idle timeout and finishes it
                view = await queue.wait(job.id, "bob", timeout=20)
        assert view.status == "done", (view, second.output())
        assert handler.hits["/slow/1.5"] == 2  # at-least-once: it ran again
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_worker_health_reports_fresh_stale_and_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    fast = settings.model_copy(update={"worker_idle_timeout_seconds": 2.0})
    env = settings_env(fast)
    health = [sys.executable, "-m", "offload.cli", "worker-health", "--state-dir"]

    def check(state: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*health, str(state)], env={**env, **extra},
                              capture_output=True, text=True, timeout=10)

    # No worker yet: unhealthy
    idle = check(tmp_path / "none")
    assert idle.returncode == 1
    assert "no worker ids" in idle.stdout
    worker = WorkerProcess(fast, tmp_path / "w")
    try:
        worker.wait_ready(fast)
        ok = check(tmp_path / "w")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "1 worker(s) healthy" in ok.stdout
        # Redis unreachable: unhealthy, said plainly, quickly
        down = check(tmp_path / "w", OFFLOAD_REDIS_URL="redis://127.0.0.1:1/0")
        assert down.returncode == 1
        assert "cannot reach Redis" in down.stdout
        # A killed worker's heartbeat expires after the idle timeout: unhealthy
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=5)
        time.sleep(2.5)
        stale = check(tmp_path / "w")
        assert stale.returncode == 1
        assert "no fresh heartbeat" in stale.stdout
    finally:
        worker.stop()
