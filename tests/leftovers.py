"""Processes a test run left behind: every live descendant of the pytest process.

At session start pytest becomes a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so a
process whose parent died (an orphaned worker child) is re-parented to pytest instead of
init and still counts as a descendant. At session end the conftest lists, kills and reports
whatever is left, and fails the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux only; elsewhere orphans go to init unseen)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process procfs shows."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        found[int(entry.name)] = (int(fields[1]), fields[0])
    return found


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def live_descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live (not zombie) descendant of ``root``; zombies among
    its direct children are reaped on the way."""
    if not Path("/proc").is_dir():
        return []
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found: list[tuple[int, str]] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        if processes[pid][1] in ("Z", "X"):
            if processes[pid][0] == root:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            continue
        found.append((pid, _command(pid)))
    return sorted(found)


def kill_all(processes: list[tuple[int, str]]) -> None:
    for pid, _ in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid, _ in processes:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
