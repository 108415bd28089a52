"""``offload worker`` and ``offload worker-health``, registered under ``offload.commands``.

The worker's modules are imported when a command runs, so the container's health check
(run every 30 s) does not load the job code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# The subparsers' ``add_parser`` that ``offload`` hands to :func:`register`.
AddParser = Callable[..., argparse.ArgumentParser]


def register(add_parser: AddParser) -> None:
    """Add the worker's subcommands to ``offload``."""
    p = add_parser("worker", help="run Streaq worker processes for every job",
                   description="Run Streaq worker processes for every catalogue job, with "
                               "the settings from OFFLOAD_* variables.",
                   epilog="examples:\n  offload worker --processes 2 --concurrency 16\n"
                          "  offload worker --burst   # exit when the queue is empty")
    p.add_argument("--processes", "-p", type=_at_least_one, default=1,
                   help="worker processes (one process is CPU-bound: scale with processes)")
    p.add_argument("--concurrency", "-c", type=_at_least_one, default=None,
                   help="jobs in flight per process (default OFFLOAD_WORKER_CONCURRENCY)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where worker ids are recorded (default OFFLOAD_WORKER_STATE_DIR)")
    p.add_argument("--verbose", "-v", action="store_true", help="log every job's start and end")
    p.set_defaults(func=_worker)

    p = add_parser("worker-health", help="exit 0 when this container's workers are alive",
                   epilog="examples:\n  offload worker-health || echo unhealthy")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where the workers recorded their ids")
    p.set_defaults(func=_worker_health)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _worker(args: argparse.Namespace) -> int:
    from worker.runner import DEFAULT_STATE_DIR, run_workers

    return run_workers(args.processes, args.concurrency,
                       state_dir=args.state_dir or DEFAULT_STATE_DIR,
                       verbose=args.verbose, burst=args.burst)


def _worker_health(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from worker.runner import DEFAULT_STATE_DIR, check_health

    ok, message = check_health(get_settings(), args.state_dir or DEFAULT_STATE_DIR)
    print(("healthy: " if ok else "unhealthy: ") + message)
    return 0 if ok else 1
