"""Worker process liveness (``worker/liveness.py``): the health check over the state dir,
and a child that stops when its parent is gone. Against real ``offload worker`` processes:
tests/integration/test_worker_process.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.config import Settings
from worker.liveness import StateFiles, check_health, forget_dead


def _exited_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_health_needs_every_recorded_process_alive_with_a_fresh_heartbeat(
    tmp_path: Path,
) -> None:
    settings = Settings(env="test")
    # GIVEN no process recorded: unhealthy
    assert check_health(settings, tmp_path) == (False, f"no worker ids in {tmp_path}")
    # GIVEN a running process (this one) with a fresh heartbeat: healthy
    mine = StateFiles(tmp_path, os.getpid())
    mine.write("w-alive")
    assert check_health(settings, tmp_path) == (True, "1 worker(s) healthy")
    # WHEN its heartbeat is older than the limit: unhealthy, saying which
    old = time.time() - 30
    os.utime(mine.beat_file, (old, old))
    ok, message = check_health(settings, tmp_path, max_age=10)
    assert not ok
    assert "no fresh heartbeat for worker w-alive" in message
    os.utime(mine.beat_file)
    # WHEN another recorded process has exited: unhealthy, and forgotten on the next start
    gone = _exited_pid()
    StateFiles(tmp_path, gone).write("w-gone")
    ok, message = check_health(settings, tmp_path)
    assert not ok
    assert f"worker w-gone (pid {gone}) is not running" in message
    forget_dead(tmp_path)
    assert check_health(settings, tmp_path) == (True, "1 worker(s) healthy")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_child_whose_parent_died_before_it_asked_for_the_signal_exits_at_once() -> None:
    # GIVEN a process told that its parent is a pid that is not its parent (the parent
    # died between the fork and the prctl)
    done = _python("from worker.liveness import die_with_parent; die_with_parent(1)")
    # THEN it exits at once instead of running unwatched
    assert done.returncode == 1, done.stderr


def test_the_heartbeat_loop_stops_the_process_once_its_parent_is_gone(tmp_path: Path) -> None:
    # GIVEN the heartbeat loop watching a parent pid that is not (or no longer) its parent
    beat = tmp_path / "1.beat"
    beat.touch()
    done = _python("import anyio, pathlib; from worker.liveness import keep_alive; "
                   f"anyio.run(keep_alive, pathlib.Path({str(beat)!r}), {_exited_pid()})")
    # THEN it sends itself SIGTERM (what a worker drains on)
    assert done.returncode == -signal.SIGTERM, done.stderr
