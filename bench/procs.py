"""Processes the benchmarks start: candidate children, a private redis-server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``OFFLOAD_*`` settings (each benchmark sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(extra)
    return env


def python_command(*args: str, with_packages: tuple[str, ...] = ()) -> list[str]:
    """``python ARGS`` in the project's environment; with ``with_packages``, in an overlay
    that adds them (``uv run --with``) without touching the project's dependencies."""
    if not with_packages:
        return [sys.executable, *args]
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not on PATH: needed to add " + ", ".join(with_packages))
    extra = [part for package in with_packages for part in ("--with", package)]
    return [uv, "run", "--no-sync", *extra, "python", *args]


class Child:
    """A ``bench.child serve`` process: one JSON request, one JSON reply, in turn."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def call(self, op: str, **request: Any) -> Any:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{' '.join(self.command)} died:\n{stderr[-3000:]}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"{' '.join(self.command)}: {op} failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def run_json(command: list[str], env: dict[str, str], timeout: float = 300) -> Any:
    """Run ``command`` and parse the last line of its stdout as JSON."""
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


