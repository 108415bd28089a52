"""A copy of this checkout's source tree, for tests that add jobs or edit code in it."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_SKIP = shutil.ignore_patterns(".git", ".venv", ".offload", "__pycache__", "*.pyc", "results",
                               "node_modules", ".mypy_cache", ".ruff_cache", "demo-output")
PARTS = ("shared", "functions", "worker", "infra", "offload", "tests")
FILES = ("pyproject.toml", "template.yaml")


def copy_tree(dest: Path) -> Path:
    """Copy the Python parts, the tests and the project files to ``dest``; returns it.
    Modules import from the copy when it is the working directory (and on PYTHONPATH)."""
    for part in PARTS:
        shutil.copytree(REPO_ROOT / part, dest / part, ignore=_SKIP)
    for name in FILES:
        shutil.copy2(REPO_ROOT / name, dest / name)
    return dest
