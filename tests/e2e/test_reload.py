"""A team's first job, end to end: ``offload new-job`` in a copy of the tree, ``offload dev``
running from it, the job run through the API, then edited and run again without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local.client import ApiClient
from infra.local.state import StackState
from tests.jobtree import copy_tree

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

START_TIMEOUT = 150.0


def wait_for(predicate: Any, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.25)
    pytest.fail(f"{what} not seen after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def run_job(client: ApiClient, text: str) -> dict[str, Any]:
    job = client.enqueue("tally_words", {"text": text})
    view = client.wait(job["id"], timeout=60)
    assert view["status"] == "done", view
    result: dict[str, Any] = view["result"]
    return result


def test_a_generated_job_runs_through_the_api_and_reloads_when_edited(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI")}
    env.update(PYTHONPATH=str(tree), OFFLOAD_STATE_DIR=str(tmp_path / "state"))
    made = subprocess.run([sys.executable, "-m", "offload.cli", "new-job", "tally_words",
                           "--http"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload.cli", "dev", "--port", "0", "--ui-port", "0",
             "--workers", "1", "--exit-with-parent"],
            cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        state = wait_for(lambda: StackState.load(tmp_path / "state" / "dev.json"),
                         START_TIMEOUT, "the stack's state file", log)
        # The state file is written just before the banner: wait for the banner too.
        wait_for(lambda: "on: worker/" in log.read_text(), 30, "the banner's Reload row", log)
        with ApiClient(state.api_url, state.token) as client:
            first = run_job(client, "one")
            assert "edited" not in first
            # WHEN the task's return value is edited while the stack runs
            task = tree / "worker" / "tasks" / "tally_words.py"
            source = task.read_text()
            assert 'return {"bucket"' in source
            task.write_text(source.replace('return {"bucket"', 'return {"edited": True, "bucket"'))
            wait_for(lambda: "reload: done" in log.read_text(), 60, "the reload", log)
            # THEN the next run returns the new value
            second = run_job(client, "two")
            print(*[ln for ln in log.read_text().splitlines() if "reload:" in ln], sep="\n")
            assert second["edited"] is True
            assert second["key"].startswith(f"tally_words/{state.sub}/")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    assert proc.returncode == 0, log.read_text()[-3000:]
