"""How ``offload status --wait`` shows a job while it runs: a live bar on a terminal, one
plain line per change otherwise (a log, a pipe, CI), always on stderr so stdout keeps the
final JSON for scripts."""

from __future__ import annotations

import shutil
from typing import Any, TextIO

BAR_WIDTH = 24


def describe(view: dict[str, Any]) -> str:
    """``running 40% rendering CSV and PDF (27 rows)``: status, progress and its message."""
    parts = [str(view.get("status", "?"))]
    progress = view.get("progress")
    if isinstance(progress, dict):
        fraction = progress.get("fraction")
        if isinstance(fraction, int | float):
            parts.append(f"{fraction:.0%}")
        if progress.get("message"):
            parts.append(str(progress["message"]))
    error = view.get("error")
    if isinstance(error, dict) and error.get("message"):
        parts.append(f"{error.get('type', 'Error')}: {error['message']}")
    return " ".join(parts)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[#########---------------]``."""
    done = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * done + "-" * (width - done) + "]"


class ProgressView:
    """Called with each changed view of one job; :meth:`close` ends the live line."""

    def __init__(self, job_id: str, out: TextIO, live: bool | None = None) -> None:
        self.job_id = job_id
        self.out = out
        self.live = out.isatty() if live is None else live
        self._drawn = False

    def __call__(self, view: dict[str, Any]) -> None:
        if self.live:
            self._draw(view)
        else:
            self.out.write(f"job {self.job_id}: {describe(view)}\n")
        self.out.flush()

    def _draw(self, view: dict[str, Any]) -> None:
        progress = view.get("progress")
        fraction = progress.get("fraction") if isinstance(progress, dict) else None
        if view.get("status") == "done":
            fraction = 1.0
        shown = bar(fraction) if isinstance(fraction, int | float) else bar(0.0)
        line = f"{shown} {describe(view)}"
        columns = shutil.get_terminal_size((80, 20)).columns
        # "\r" plus clear-to-end-of-line redraws in place; cut to the width so it never wraps.
        self.out.write("\r\x1b[K" + line[: max(10, columns - 1)])
        self._drawn = True

    def close(self) -> None:
        if self.live and self._drawn:
            self.out.write("\n")
            self.out.flush()
