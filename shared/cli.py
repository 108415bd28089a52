"""``offload``: the single command-line entry.

Subcommands import what they need when they run, so ``offload worker-health`` (the
container's health check, run every 30 s) starts in milliseconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _worker(args: argparse.Namespace) -> int:
    from worker.runner import DEFAULT_STATE_DIR, run_workers

    return run_workers(
        args.processes,
        args.concurrency,
        state_dir=Path(args.state_dir or DEFAULT_STATE_DIR),
        verbose=args.verbose,
        burst=args.burst,
    )


def _worker_health(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from worker.runner import DEFAULT_STATE_DIR, check_health

    ok, message = check_health(get_settings(), Path(args.state_dir or DEFAULT_STATE_DIR))
    print(("healthy: " if ok else "unhealthy: ") + message)
    return 0 if ok else 1


def _test(args: argparse.Namespace) -> int:
    import subprocess

    return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offload", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run Streaq worker processes for every catalogue job")
    p.add_argument("--processes", "-p", type=int, default=1,
                   help="worker processes (one process is CPU-bound: scale with processes)")
    p.add_argument("--concurrency", "-c", type=int, default=None,
                   help="jobs in flight per process (default OFFLOAD_WORKER_CONCURRENCY)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--state-dir", default=None, help="where worker ids are recorded")
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=_worker)

    p = sub.add_parser("worker-health", help="exit 0 when this container's workers are alive")
    p.add_argument("--state-dir", default=None)
    p.set_defaults(func=_worker_health)

    p = sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_test)

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands that live with their feature (the local stack, benchmarks)."""
    found = []
    for module_name in ("infra.local.commands", "bench.commands"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        found.append(module.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # `offload test -q -k x`: everything after "test" belongs to pytest, dashes included.
    args, extra = parser.parse_known_args(argv)
    if args.command == "test":
        args.pytest_args = [*extra, *args.pytest_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
