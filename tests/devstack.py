"""``offload dev`` as a subprocess on free ports, for tests that drive it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.local.client import ApiClient
from infra.local.state import StackState

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 150.0


@dataclass
class DevStack:
    proc: subprocess.Popen[bytes]
    state: StackState
    state_dir: Path
    log: Path

    def client(self, token: str | None = None) -> ApiClient:
        return ApiClient(self.state.api_url, token or self.state.token)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def dev_stack(state_dir: Path, *args: str) -> Iterator[DevStack]:
    """A running stack (private Redis, in-memory MongoDB) until the block ends; then Ctrl-C."""
    log = state_dir / "dev.log"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI")}
    env["OFFLOAD_STATE_DIR"] = str(state_dir)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload.cli", "dev", "--port", "0", "--ui-port", "0",
             "--exit-with-parent", "--no-reload", *args],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        yield DevStack(proc, _wait_for_state(proc, state_dir, log), state_dir, log)
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
