"""docs/JOBS.md's worked example, run as written: generated, filled in from the page's code
blocks, and its tests passing in a copy of the tree."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobtree import REPO_ROOT, copy_tree

pytestmark = pytest.mark.slow

DOC = REPO_ROOT / "docs" / "JOBS.md"
BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```python\n(?P<code>.*?)\n```", re.DOTALL)


def doc_files() -> dict[str, str]:
    return {m["path"]: m["code"] + "\n" for m in BLOCK.finditer(DOC.read_text())}


def test_the_page_gives_the_catalogue_entry_the_task_and_the_test() -> None:
    assert set(doc_files()) == {"shared/catalogue/export_orders.py",
                                "worker/tasks/export_orders.py",
                                "tests/jobs/test_export_orders.py"}
    assert "./infra/local/offload new-job export_orders --http" in DOC.read_text()


def test_the_worked_example_runs_as_written(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("REDIS_URL", None)
    command = re.search(r"\./infra/local/offload (new-job export_orders[^\n]*)", DOC.read_text())
    assert command is not None
    args = shlex.split(command[1])
    made = subprocess.run([sys.executable, "-m", "offload.cli", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    for path, code in doc_files().items():
        assert (tree / path).exists(), f"new-job did not write {path}"
        (tree / path).write_text(code)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/jobs/test_export_orders.py"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout, run.stdout[-2000:]
