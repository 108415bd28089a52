"""The running stack's state file, ``.offload/dev.json``: every URL, port, token and PID.

``offload dev`` writes it once everything is up and removes it on shutdown; ``demo``,
``enqueue``, ``status``, ``abort`` and ``fire`` read it to find the stack. A file left behind
by a stack that was killed is recognised as stale (its supervisor PID is gone).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "OFFLOAD_STATE_DIR"


def state_dir() -> Path:
    """``.offload/`` in the working directory (``OFFLOAD_STATE_DIR`` overrides it)."""
    return Path(os.environ.get(STATE_DIR_ENV) or ".offload").resolve()


def state_file() -> Path:
    return state_dir() / "dev.json"


@dataclass
class StackState:
    """What a client of the running stack needs to know."""

    stack_id: str
    supervisor_pid: int
    api_url: str
    token: str
    sub: str
    # Every other user's token, for trying ownership rules: token -> sub.
    other_tokens: dict[str, str]
    aws_endpoint_url: str
    redis_url: str
    mongodb_uri: str
    fixtures_url: str
    streaq_ui_url: str
    swagger_url: str
    # component -> invoke URL of its local Lambda container(s)
    functions: dict[str, list[str]]
    # the template's schedules, as infra.local.triggers.ScheduleTarget fields
    schedules: list[dict[str, Any]]
    # component -> PID of the process (group leader) running it
    pids: dict[str, int]
    env: dict[str, str]
    started_at: float

    def save(self, path: Path | None = None) -> Path:
        """Write atomically, so a reader never sees half a file."""
        target = path or state_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)  # it holds the dev tokens
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: Path | None = None) -> StackState | None:
        """The state of a running stack, or None when there is none (or only a stale file)."""
        target = path or state_file()
        try:
            data = json.loads(target.read_text())
            state = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if pid_alive(state.supervisor_pid) else None


def pid_alive(pid: int) -> bool:
    """True while a process with this PID exists (and is not a zombie we could reap)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
