"""What every benchmark returns, and how a run is printed and saved."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ROOT


@dataclass
class Goal:
    """One of the issue's goals, with what this run measured."""

    goal: str
    measured: str
    met: bool


@dataclass
class BenchResult:
    """One benchmark's outcome: a table for people, data for the JSON file."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[Any]]
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0


@dataclass
class BenchConfig:
    """What a run is asked for: ``quick`` is a smoke run of about a minute."""

    quick: bool
    workdir: Path


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        if value != 0 and abs(value) < 1:
            return f"{value:.3f}"
        return f"{value:.{digits}f}"
    return str(value)


def render_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    cells = [[fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def render(result: BenchResult) -> str:
    parts = [f"### {result.title}", "", render_table(result.headers, result.rows), ""]
    for goal in result.goals:
        parts.append(f"- {'MET' if goal.met else 'NOT MET'}: {goal.goal} (measured: "
                     f"{goal.measured})")
    parts += [f"- note: {note}" for note in result.notes]
    load = ", ".join(f"{x:.2f}" for x in result.load_before)
    parts.append(f"- load average before: {load}; took {result.seconds:.0f} s")
    return "\n".join(parts) + "\n"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals (raw samples keep their meaning; the file stays small)."""
    if isinstance(value, float):
        return value if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def save(results: list[BenchResult], config: BenchConfig, versions: dict[str, Any],
         directory: Path, started: datetime) -> Path:
    """Write the run to ``directory/<UTC time>[-quick].json`` and ``latest[-quick].json``."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if config.quick else ""
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "quick": config.quick,
        "machine": machine(),
        "git": git_revision(),
        "versions": versions,
        "benchmarks": [_rounded(asdict(r)) for r in results],
    }
    text = json.dumps(document, indent=1, default=str) + "\n"
    path = directory / f"{started.strftime('%Y%m%dT%H%M%SZ')}{suffix}.json"
    path.write_text(text)
    (directory / f"latest{suffix}.json").write_text(text)
    return path
