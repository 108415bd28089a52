"""ECS task scale-in protection (worker/task_protection.py) against a local stand-in of the
ECS agent's endpoint (tests/integration/ecs_agent.py): real ``offload worker`` processes
hold it while a job runs in any of them and release it once idle; an agent that fails or
cannot be reached never fails a job; the keeper renews before the protection could lapse
under a job and ignores the busy file of a killed process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.local.private_redis import free_port
from shared.config import Settings
from shared.jobs import CATALOGUE
from shared.queue import JobQueue
from tests.faults.jobs import enqueue_fetches, running_ids, wait_finished
from tests.integration.ecs_agent import ecs_agent
from tests.integration.procs import WorkerProcess, slow_server
from worker.task_protection import AgentClient, ProtectionKeeper

IDLE_SECONDS = 1.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def quick(settings: Settings) -> Settings:
    # prefetch 0: a process fetches only for a free slot, so two jobs land in two processes
    return settings.model_copy(update={"task_protection_idle_seconds": IDLE_SECONDS,
                                       "worker_prefetch": 0})


@pytest.mark.anyio
async def test_a_task_is_protected_while_any_process_runs_a_job_and_released_when_idle(
    quick: Settings, tmp_path: Path
) -> None:
    with ecs_agent() as (uri, agent), slow_server() as (base, _):
        worker = WorkerProcess(quick, tmp_path, "--processes", "2", "--concurrency", "1",
                               ECS_AGENT_URI=uri)
        try:
            worker.wait_ready(quick)
            await asyncio.sleep(2 * IDLE_SECONDS)
            assert agent.puts == []  # an idle task is never protected
            async with JobQueue(quick) as queue:
                # GIVEN a 2 s job and a 5 s job, one in each of the task's two processes
                short, long = await enqueue_fetches(
                    queue, [f"{base}/slow/short/2", f"{base}/slow/long/5"], "protect")
                deadline = time.monotonic() + 10
                while {short, long} - await running_ids(queue):
                    assert time.monotonic() < deadline, worker.output()[-3000:]
                    await asyncio.sleep(0.05)
                # THEN the task is protected while they run ...
                await asyncio.to_thread(wait_for, agent.is_protected, 5, "protection")
                views = await wait_finished(queue, [short, long], "protect", 20)
                # ... until the task has been idle for a while
                await asyncio.to_thread(wait_for, lambda: not agent.is_protected(),
                                        10, "release")
            worker.signal(signal.SIGTERM)
            code = await asyncio.to_thread(worker.wait, 20)
        finally:
            output = worker.output()
            worker.stop()
    assert [v.status for v in views] == ["done", "done"], output[-3000:]
    assert code == 0
    # one protection for the whole task, although two processes were busy
    on, off = agent.puts
    assert (on.enabled, off.enabled) == (True, False)
    assert on.minutes is not None
    assert on.minutes * 60 >= max(spec.timeout_seconds for spec in CATALOGUE.values())
    short_done, long_done = (v.finished_at.timestamp() for v in views if v.finished_at)
    assert on.at < short_done
    # the short job's end did not release it: the other process was still busy
    assert off.at >= long_done + IDLE_SECONDS - 0.2
    assert "task scale-in protection on" in output


@pytest.mark.anyio
@pytest.mark.parametrize("failure", ["answers 500", "refuses connections"])
async def test_an_agent_that_fails_does_not_fail_the_job(
    quick: Settings, tmp_path: Path, failure: str
) -> None:
    with ecs_agent(fail=True) as (uri, agent), slow_server() as (base, _):
        if failure == "refuses connections":
            uri = f"http://127.0.0.1:{free_port()}/api/0123456789abcdef"
        worker = WorkerProcess(quick, tmp_path, ECS_AGENT_URI=uri)
        try:
            worker.wait_ready(quick)
            async with JobQueue(quick) as queue:
                (job,) = await enqueue_fetches(queue, [f"{base}/slow/job/1"], "protect")
                (view,) = await wait_finished(queue, [job], "protect", 20)
        finally:
            output = worker.output()
            worker.stop()
    assert view.status == "done", output[-3000:]
    assert view.tries == 1
    assert "could not set task scale-in protection" in output
    if failure == "answers 500":
        assert agent.puts and {p.status for p in agent.puts} == {500}
    else:
        assert "ConnectError" in output


def test_the_keeper_counts_live_processes_renews_and_releases_on_stop(tmp_path: Path) -> None:
    # GIVEN the busy file of a process that was killed
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / f"{gone.pid}.busy").touch()
    with ecs_agent() as (uri, agent):
        # 1-minute protections renewed once less than 59.7 s are left: every ~0.3 s
        keeper = ProtectionKeeper(AgentClient(uri), tmp_path, cover=59.7, minutes=1,
                                  idle_seconds=0.5, poll_seconds=0.05)
        keeper.start()
        try:
            time.sleep(0.5)
            assert agent.puts == []  # a dead process's file protects nothing
            # WHEN two live processes of the task are busy
            mine, parents = tmp_path / f"{os.getpid()}.busy", tmp_path / f"{os.getppid()}.busy"
            mine.touch()
            parents.touch()
            # THEN the task is protected, and renewed before the protection could lapse
            wait_for(lambda: len(agent.accepted()) >= 3, 5, "renewals")
            assert all(p.enabled and p.minutes == 1 for p in agent.accepted())
            # one idle process does not release it; the last one does, after idle_seconds
            mine.unlink()
            time.sleep(1.0)
            assert agent.is_protected()
            idle_since = time.time()
            parents.unlink()
            wait_for(lambda: not agent.is_protected(), 5, "release")
            assert agent.accepted()[-1].at - idle_since >= 0.5
            # busy again, then the keeper stops (its workers have ended): released
            mine.touch()
            wait_for(agent.is_protected, 5, "protection")
            mine.unlink()
        finally:
            keeper.stop()
        assert not agent.is_protected()
    assert [p.enabled for p in agent.accepted()][-2:] == [True, False]
