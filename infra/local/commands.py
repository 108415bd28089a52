"""The local stack's subcommands of ``offload``: dev, demo, jobs, fire, and the API client
commands of :mod:`infra.local.client_cli` (enqueue, status, list, retry, abort, download,
upload, mail).

Registered under ``offload.commands`` (pyproject.toml). Heavy modules are imported inside
each command, so ``offload --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from infra.local import client_cli
from infra.local.client_cli import NO_STACK, fail

# The subparsers' ``add_parser`` that ``offload`` hands to :func:`register`.
AddParser = Callable[..., argparse.ArgumentParser]


def register(add_parser: AddParser) -> None:
    """Add the local stack's subcommands to ``offload``'s parser."""
    _add_dev(add_parser)
    _add_demo(add_parser)
    p = add_parser("jobs", help="every job, who may enqueue it, and its input fields",
                   description="The job catalogue (shared/jobs.py): each job's name, whether "
                               "callers may enqueue it over HTTP, its input fields with their "
                               "types (? = optional), timeout and tries.",
                   epilog="examples:\n  offload jobs\n  offload jobs --http")
    p.add_argument("--http", action="store_true", help="only jobs callers may enqueue")
    p.set_defaults(func=_jobs)
    client_cli.register(add_parser)
    p = add_parser("fire", help="fire a template.yaml schedule on the running stack",
                   epilog="examples:\n  offload fire send_daily_digest")
    p.add_argument("name", help="the schedule's job (e.g. send_daily_digest) or logical id")
    p.set_defaults(func=_fire)


def _add_dev(add_parser: AddParser) -> None:
    p = add_parser("dev", help="run the whole system on this machine (Ctrl-C stops it)",
                   description="Run the whole system on this machine: Redis, moto (S3, SES), "
                               "MongoDB, the Lambda handlers behind a local API Gateway, "
                               "workers. The banner lists URLs, users and tokens.",
                   epilog="examples:\n  offload dev\n  offload dev --port 0 --ui-port 0\n"
                          "  offload dev --workers 2 --verbose")
    p.add_argument("--port", type=int, default=8000, help="the API's port (0: any free port)")
    p.add_argument("--ui-port", type=int, default=8001,
                   help="Streaq's web UI port (0: any free port)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: none)")
    p.add_argument("--api-concurrency", type=int, default=1,
                   help="API Lambda containers, i.e. requests served at once (each one is a "
                        "process that costs a few seconds of CPU to start)")
    p.add_argument("--fire", action="append", default=[], metavar="NAME",
                   help="fire this schedule once the stack is up (repeatable)")
    p.add_argument("--token", default=None,
                   help="the dev bearer token (default: OFFLOAD_DEV_TOKEN or a random one)")
    p.add_argument("--template", type=Path, default=None, help="the SAM template to mirror")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started this one exits (for tools)")
    p.add_argument("--no-reload", action="store_true",
                   help="do not restart workers and handlers when worker/, shared/ or "
                        "functions/ change")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="every component's full log: Lambda INFO logs and metrics, every "
                        "request, Streaq's per-job lines and retry tracebacks")
    p.set_defaults(func=_dev)


def _add_demo(add_parser: AddParser) -> None:
    p = add_parser("demo", help="run every job end to end on the dev stack",
                   description="Run every job end to end against the dev stack (starting one "
                               "when none is running).",
                   epilog="examples:\n  offload demo\n  offload demo --output /tmp/demo")
    p.add_argument("--output", type=Path, default=Path("demo-output"),
                   help="where thumbnails and reports are written")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for all jobs to finish")
    p.set_defaults(func=_demo)


# --- handlers -------------------------------------------------------------------------


def _dev(args: argparse.Namespace) -> int:
    from infra.local.dev import DevOptions, run_dev

    options = DevOptions(port=args.port, ui_port=args.ui_port, workers=args.workers,
                         api_concurrency=max(1, args.api_concurrency), fire=args.fire,
                         token=args.token, exit_with_parent=args.exit_with_parent,
                         reload=not args.no_reload, verbose=args.verbose)
    if args.template is not None:
        options.template = args.template.resolve()
    return run_dev(options)


def _demo(args: argparse.Namespace) -> int:
    from infra.local.demo import run_demo

    return run_demo(output=args.output, timeout=args.timeout)


def _fire(args: argparse.Namespace) -> int:
    from infra.local.dev import DevError, fire_schedule
    from infra.local.state import StackState

    state = StackState.load()
    if state is None:
        return fail(NO_STACK)
    try:
        return 0 if fire_schedule(state, args.name) else 1
    except DevError as exc:
        return fail(str(exc))


def _jobs(args: argparse.Namespace) -> int:
    from infra.local.catalogue_view import render

    print(render(http_only=args.http))
    return 0
