"""Is each worker process alive? Heartbeat files, and children that die with their parent.

Each worker process records itself in the state dir: ``<pid>.id`` (its Streaq worker id)
and ``<pid>.beat``, a file its event loop touches every :data:`HEARTBEAT_EVERY_SECONDS`.
``offload worker-health`` (the container's health check) calls a container healthy when
every recorded process is running and its heartbeat is fresh: the liveness of the
processes and their event loops, not of Redis, so a cache failover does not make every
worker container unhealthy at once (the Redis watchdog reconnects in place instead).

A child of ``offload worker --processes N`` must not outlive its parent: it asks the
kernel for SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``) and, as a fallback,
its heartbeat loop notices a new parent process id.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from pathlib import Path

import anyio

from shared.config import Settings

log = logging.getLogger("offload.worker")

HEARTBEAT_EVERY_SECONDS = 1.0
# Older than this, a heartbeat means a stopped process or a frozen event loop.
HEARTBEAT_MAX_AGE_SECONDS = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StateFiles:
    """The files one worker process keeps in the state dir."""

    def __init__(self, state_dir: Path, pid: int) -> None:
        self.id_file = state_dir / f"{pid}.id"
        self.beat_file = state_dir / f"{pid}.beat"
        # Present while the process runs a job (on ECS only: worker/task_protection.py).
        self.busy_file = state_dir / f"{pid}.busy"

    def write(self, worker_id: str) -> None:
        self.id_file.parent.mkdir(parents=True, exist_ok=True)
        self.beat_file.touch()
        self.id_file.write_text(worker_id)

    def remove(self) -> None:
        self.id_file.unlink(missing_ok=True)
        self.beat_file.unlink(missing_ok=True)
        self.busy_file.unlink(missing_ok=True)


def forget_dead(state_dir: Path) -> None:
    """Remove the files of recorded processes that are no longer running (a previous
    run killed outright), so they do not keep the health check failing."""
    for id_file in state_dir.glob("*.id"):
        pid = _pid_of(id_file)
        if pid is not None and not pid_alive(pid):
            StateFiles(state_dir, pid).remove()


async def keep_alive(beat_file: Path, parent_pid: int | None = None) -> None:
    """Touch ``beat_file`` every :data:`HEARTBEAT_EVERY_SECONDS`, for as long as the event
    loop runs; with ``parent_pid``, SIGTERM this process once its parent is gone."""
    while True:
        # On the loop itself, not in a thread: the loop's liveness is what it shows, and a
        # busy thread pool must not delay it (one syscall).
        _touch(beat_file)
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("parent process %d is gone; stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            parent_pid = None
        await anyio.sleep(HEARTBEAT_EVERY_SECONDS)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except FileNotFoundError:  # the state dir was cleared under us: write it again
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as exc:
            log.warning("cannot write heartbeat %s: %s", path, exc)
    except OSError as exc:  # the health check will report it; the worker goes on
        log.warning("cannot write heartbeat %s: %s", path, exc)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGTERM this process when its parent dies (Linux); exit at once if
    the parent died before this call (the signal would never come)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        log.warning("parent process %d died before this worker started; exiting", parent_pid)
        raise SystemExit(1)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: existence is all we can tell
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def check_health(settings: Settings, state_dir: Path,
                 max_age: float = HEARTBEAT_MAX_AGE_SECONDS) -> tuple[bool, str]:
    """True when every worker process recorded in ``state_dir`` is running and its event
    loop touched its heartbeat within ``max_age`` seconds. Reads no service: ``settings``
    is the caller's, kept for a check that needs it."""
    del settings
    id_files = sorted(state_dir.glob("*.id"))
    if not id_files:
        return False, f"no worker ids in {state_dir}"
    problems = [problem for f in id_files if (problem := _problem(f, max_age))]
    if problems:
        return False, "; ".join(problems)
    return True, f"{len(id_files)} worker(s) healthy"


def _problem(id_file: Path, max_age: float) -> str | None:
    pid = _pid_of(id_file)
    if pid is None:
        return f"{id_file.name} does not name a process"
    try:
        worker_id = id_file.read_text().strip()
    except FileNotFoundError:  # it stopped while we looked
        return f"worker process {pid} stopped"
    if not pid_alive(pid):
        return f"worker {worker_id} (pid {pid}) is not running"
    try:
        age = time.time() - StateFiles(id_file.parent, pid).beat_file.stat().st_mtime
    except FileNotFoundError:
        return f"worker {worker_id} (pid {pid}) has no heartbeat file"
    if age > max_age:
        return f"no fresh heartbeat for worker {worker_id} (pid {pid}): {age:.1f}s old"
    return None


def _pid_of(id_file: Path) -> int | None:
    try:
        return int(id_file.stem)
    except ValueError:
        return None
