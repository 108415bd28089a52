"""Real ``offload worker`` processes: drain on SIGTERM, re-run after SIGKILL, health check."""

from __future__ import annotations

import os
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
from worker.liveness import HEARTBEAT_EVERY_SECONDS, pid_alive
from worker.runner import check_health

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


def _health(state: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``offload worker-health`` as the container runs it."""
    return subprocess.run([sys.executable, "-m", "offload.cli", "worker-health", "--state-dir",
                           str(state)], env=env, capture_output=True, text=True, timeout=10)


def test_worker_health_is_the_liveness_of_each_worker_process(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(settings)
    # GIVEN no worker yet: unhealthy
    idle = _health(tmp_path / "none", env)
    assert idle.returncode == 1
    assert "no worker ids" in idle.stdout
    worker = WorkerProcess(settings, tmp_path / "w")
    try:
        # WHEN a worker runs: healthy
        worker.wait_ready(settings)
        ok = _health(tmp_path / "w", env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "1 worker(s) healthy" in ok.stdout
        # ... and a Redis it cannot reach does not change that (the process is alive and
        # reconnects by itself: a cache failover must not fail every container's check)
        elsewhere = _health(tmp_path / "w", {**env, "OFFLOAD_REDIS_URL": "redis://127.0.0.1:1/0"})
        assert elsewhere.returncode == 0, elsewhere.stdout
        # WHEN its event loop is frozen (the process stopped): unhealthy once the heartbeat
        # is older than the limit
        worker.signal(signal.SIGSTOP)
        time.sleep(HEARTBEAT_EVERY_SECONDS * 2.5)
        frozen_ok, frozen = check_health(settings, tmp_path / "w",
                                         max_age=HEARTBEAT_EVERY_SECONDS * 2)
        assert not frozen_ok
        assert "no fresh heartbeat" in frozen
        # ... and healthy again once it runs again
        worker.signal(signal.SIGCONT)
        time.sleep(HEARTBEAT_EVERY_SECONDS * 1.5)
        assert check_health(settings, tmp_path / "w",
                            max_age=HEARTBEAT_EVERY_SECONDS * 2)[0]
        # WHEN the process is killed outright: unhealthy at once
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=5)
        dead = _health(tmp_path / "w", env)
        assert dead.returncode == 1
        assert "is not running" in dead.stdout
    finally:
        worker.proc.send_signal(signal.SIGCONT)
        worker.stop()


def test_children_exit_when_the_parent_is_killed(settings: Settings, tmp_path: Path) -> None:
    # GIVEN `offload worker --processes 2`, both children healthy
    worker = WorkerProcess(settings, tmp_path / "w", "--processes", "2")
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(children) < 2 and time.monotonic() < deadline:
            children = [int(p.stem) for p in (tmp_path / "w").glob("*.id")]
            time.sleep(0.1)
        assert len(children) == 2, worker.output()
        worker.wait_ready(settings)
        # WHEN the parent is killed without a chance to stop them
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=5)
        # THEN both children exit within a few seconds
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if pid_alive(p)], worker.output()
    finally:
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        worker.stop()
