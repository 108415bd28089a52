"""``offload bench``: run the benchmarks, print their tables, write JSON to bench/results/."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import ROOT
from bench.report import BenchConfig, BenchResult, render, save

# Name -> module with ``run(config) -> BenchResult``, in the order they run.
BENCHMARKS: dict[str, str] = {
    "image_job": "bench.image_job",
    "image_concurrency": "bench.image_concurrency",
    "bomb": "bench.bomb",
    "worker_throughput": "bench.worker_throughput",
    "fairness": "bench.fairness",
    "redis_calls": "bench.redis_calls",
    "enqueue": "bench.enqueue",
    "cold_start": "bench.cold_start",
    "end_to_end": "bench.end_to_end",
    "failover": "bench.failover",
}
RESULTS_DIR = ROOT / "bench" / "results"


def register(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``offload bench`` (registered under ``offload.commands`` in pyproject.toml)."""
    p = add_parser(
        "bench", help="run the benchmarks (bench/README.md)",
        description="Run the benchmarks side by side: tables to stdout, JSON to bench/results/.",
        epilog="examples:\n  offload bench --quick   # a smoke run of about a minute")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of about a minute: few rounds, small job counts")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), default=None,
                   help="run only this benchmark (repeatable)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="where the JSON goes (default bench/results/)")
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    p.set_defaults(func=main)


def versions() -> dict[str, Any]:
    """The versions every benchmark shares (each adds its own in its data)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {"python": sys.version.split()[0]}
    for package in ("pillow", "streaq", "coredis", "pydantic", "aws-lambda-powertools",
                    "boto3", "moto", "anyio"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def run_one(name: str, config: BenchConfig) -> BenchResult:
    module: Any = importlib.import_module(BENCHMARKS[name])
    load_before = os.getloadavg()
    start = time.monotonic()
    result: BenchResult = module.run(config)
    result.seconds = time.monotonic() - start
    result.load_before, result.load_after = load_before, os.getloadavg()
    return result


def main(args: argparse.Namespace) -> int:
    names = args.only or list(BENCHMARKS)
    started = datetime.now(UTC)
    print(f"offload bench{' --quick' if args.quick else ''}: {', '.join(names)} "
          f"(load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} cores)", flush=True)
    results: list[BenchResult] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="offload-bench-") as workdir:
        config = BenchConfig(quick=args.quick, workdir=Path(workdir))
        for name in names:
            try:
                result = run_one(name, config)
            except Exception as exc:  # one broken benchmark must not lose the others
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                print(f"\n### {name}: FAILED\n{type(exc).__name__}: {exc}\n", flush=True)
                continue
            results.append(result)
            print("\n" + render(result), flush=True)
    if results and not args.no_save:
        path = save(results, config, versions(), args.results, started)
        print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    shared = versions()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in shared.items() if v))
    goals = [g for r in results for g in r.goals]
    met = sum(g.met for g in goals)
    print(f"goals met: {met}/{len(goals)}"
          + (f"; benchmarks failed: {len(failures)}" if failures else ""))
    return 1 if failures else 0
