"""The local stack's subcommands of ``offload``: dev, demo, enqueue, status, abort, fire.

Registered under ``offload.commands`` (pyproject.toml). Heavy modules are imported inside
each command, so ``offload --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The subparsers' ``add_parser`` that ``offload`` hands to :func:`register`.
AddParser = Callable[..., argparse.ArgumentParser]


def register(add_parser: AddParser) -> None:
    """Add the local stack's subcommands to ``offload``'s parser."""
    _add_dev(add_parser)
    _add_demo(add_parser)
    _add_client_commands(add_parser)
    p = add_parser("fire", help="fire a template.yaml schedule on the running stack")
    p.add_argument("name", help="the schedule's job (e.g. send_daily_digest) or logical id")
    p.set_defaults(func=_fire)


def _add_dev(add_parser: AddParser) -> None:
    p = add_parser("dev", help="run the whole system on this machine (Ctrl-C stops it)")
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
    p.set_defaults(func=_dev)


def _add_demo(add_parser: AddParser) -> None:
    p = add_parser("demo", help="run every job end to end on the dev stack",
                   description="Run every job end to end against the dev stack (starting one "
                               "when none is running).")
    p.add_argument("--output", type=Path, default=Path("demo-output"),
                   help="where thumbnails and reports are written")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for all jobs to finish")
    p.set_defaults(func=_demo)


def _add_client_commands(add_parser: AddParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", default=None, help="default: the running dev stack's")
    common.add_argument("--token", default=None, help="default: the running dev stack's")

    p = add_parser("enqueue", parents=[common], help="enqueue a job through the API")
    p.add_argument("name")
    p.add_argument("--data", default="{}", help="the job's input as JSON")
    p.add_argument("--idempotency-key", default=None)
    p.add_argument("--wait", action="store_true", help="wait until the job finished")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=_enqueue)

    p = add_parser("status", parents=[common], help="a job's status, result or error")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait until the job finished")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=_status)

    p = add_parser("abort", parents=[common], help="abort a queued or running job")
    p.add_argument("job_id")
    p.set_defaults(func=_abort)


# --- handlers -------------------------------------------------------------------------


def _dev(args: argparse.Namespace) -> int:
    from infra.local.dev import DevOptions, run_dev

    options = DevOptions(port=args.port, ui_port=args.ui_port, workers=args.workers,
                         api_concurrency=max(1, args.api_concurrency), fire=args.fire,
                         token=args.token, exit_with_parent=args.exit_with_parent,
                         reload=not args.no_reload)
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
        return _fail(_NO_STACK)
    try:
        return 0 if fire_schedule(state, args.name) else 1
    except DevError as exc:
        return _fail(str(exc))


_NO_STACK = ("no dev stack is running here (.offload/dev.json): start one with "
             "`offload dev`, or pass --api-url and --token")


def _fail(message: str) -> int:
    print(f"offload: {message}", file=sys.stderr)
    return 2


def _client(args: argparse.Namespace) -> Any:
    from infra.local.client import ApiClient
    from infra.local.state import StackState

    if args.api_url and args.token:
        return ApiClient(args.api_url, args.token)
    state = StackState.load()
    if state is None:
        return None
    return ApiClient(args.api_url or state.api_url, args.token or state.token)


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=True))


def _run_client(args: argparse.Namespace, action: Any) -> int:
    import httpx

    from infra.local.client import ApiCallError

    client = _client(args)
    if client is None:
        return _fail(_NO_STACK)
    with client:
        try:
            code: int = action(client)
            return code
        except ApiCallError as exc:
            _print(exc.body)
            return _fail(str(exc))
        except httpx.HTTPError as exc:
            return _fail(f"cannot reach the API at {client.base_url}: {exc}")


def _finished_code(body: dict[str, Any]) -> int:
    """0 done, 1 failed/aborted/expired, 3 still running after --timeout."""
    from infra.local.client import FINISHED

    status = body.get("status")
    if status == "done":
        return 0
    return 1 if status in FINISHED else 3


def _enqueue(args: argparse.Namespace) -> int:
    from infra.local.client import job_id_of

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return _fail(f"--data is not JSON: {exc}")
    if not isinstance(data, dict):
        return _fail("--data must be a JSON object")

    def action(client: Any) -> int:
        body = client.enqueue(args.name, data, args.idempotency_key)
        _print(body)
        if not args.wait:
            return 0
        final = client.wait(job_id_of(body), args.timeout)
        _print(final)
        return _finished_code(final)

    return _run_client(args, action)


def _status(args: argparse.Namespace) -> int:
    def action(client: Any) -> int:
        body = client.wait(args.job_id, args.timeout) if args.wait else client.status(args.job_id)
        _print(body)
        return _finished_code(body) if args.wait else 0

    return _run_client(args, action)


def _abort(args: argparse.Namespace) -> int:
    def action(client: Any) -> int:
        _print(client.abort(args.job_id))
        return 0

    return _run_client(args, action)
