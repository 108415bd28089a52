"""Cold start: each handler module, imported in a fresh interpreter, loads nothing heavy.

Pillow, beanie, PyMongo, motor and the worker's code belong to the worker container; boto3
is imported on first use (only the routes and records that touch S3 pay for it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = ["functions.api", "functions.s3_events", "functions.scheduler",
            "functions.queue_metrics"]
FORBIDDEN = ["PIL", "beanie", "pymongo", "motor", "worker", "boto3"]
# A generous ceiling for a loaded CI machine; the figure itself is printed for the record.
IMPORT_BUDGET_SECONDS = 6.0


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFLOAD_", "PYTHON"))}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("module", HANDLERS)
def test_handler_module_imports_nothing_heavy(module: str) -> None:
    code = (
        f"import json, sys, {module}\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps(heavy))"
    )
    loaded = json.loads(_python("-c", code).stdout.splitlines()[-1])
    assert loaded == []


def test_import_time_of_the_api_handler() -> None:
    stderr = _python("-X", "importtime", "-c", "import functions.api").stderr
    match = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| functions\.api$", stderr, re.M)
    assert match, stderr[-2000:]
    seconds = int(match.group(1)) / 1e6
    print(f"python -X importtime -c 'import functions.api': {seconds:.3f} s cumulative")
    assert seconds < IMPORT_BUDGET_SECONDS
