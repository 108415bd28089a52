"""Measured figures of the fault and security suites, for docs/RELIABILITY.md.

Each test records what it measured with :func:`record`; the figures are printed at the
end of the run (``reliability figures``) and written as JSON to
``$OFFLOAD_RELIABILITY_FIGURES`` (default: ``reliability-figures.json`` in the system's
temporary directory), so the document can quote the latest run.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

_lock = threading.Lock()
FIGURES: dict[str, dict[str, Any]] = {}


def figures_path() -> Path:
    default = Path(tempfile.gettempdir()) / "reliability-figures.json"
    return Path(os.environ.get("OFFLOAD_RELIABILITY_FIGURES", str(default)))


def record(test: str, **values: Any) -> None:
    """Remember ``values`` (numbers, short strings) under ``test`` and rewrite the file."""
    with _lock:
        FIGURES.setdefault(test, {}).update(values)
        path = figures_path()
        previous: dict[str, Any] = {}
        if path.exists():
            try:
                previous = json.loads(path.read_text())
            except ValueError:
                previous = {}
        previous.update(FIGURES)
        path.write_text(json.dumps(previous, indent=2, sort_keys=True, default=str))


def summary_lines() -> list[str]:
    return [
        f"{test}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(values.items()))
        for test, values in sorted(FIGURES.items())
    ]


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


_printed = False


def print_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of this run at the end of pytest's report (once, from either suite)."""
    global _printed
    lines = summary_lines()
    if _printed or not lines:
        return
    _printed = True
    terminalreporter.write_sep("-", f"reliability figures (also in {figures_path()})")
    for line in lines:
        terminalreporter.write_line(line)
