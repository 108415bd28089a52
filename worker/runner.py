"""``offload worker`` and ``offload worker-health``: run workers, and check on them.

Each worker process records itself in the state dir and keeps a heartbeat file fresh
(:mod:`worker.liveness`); the health check (the container's HEALTHCHECK) reads them.
Children of ``--processes N`` die with their parent. On ECS, each process also marks itself
busy there while it runs a job, and the task's one keeper (the parent, or the only process)
holds the task's scale-in protection meanwhile (:mod:`worker.task_protection`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import Settings, get_settings, production_problems
from worker.liveness import (
    StateFiles,
    check_health,
    die_with_parent,
    forget_dead,
    keep_alive,
)

log = logging.getLogger("offload.worker")

__all__ = ["DEFAULT_STATE_DIR", "check_health", "run_one", "run_workers"]

DEFAULT_STATE_DIR = Path(os.environ.get("OFFLOAD_WORKER_STATE_DIR", "/tmp/offload-worker"))  # noqa: S108


class DropRepeatedJobLines(logging.Filter):
    """Streaq logs a line as each job starts ("task <name> □ <id> → worker <id>") and one
    as it succeeds ("task <name> ■ <id> ← <result>"). The retry policy's own line ("job
    <name> <id> try n/m correlation_id=...") says more than the first, and a finished job's
    outcome is in its status; failures and retries are logged at WARNING and above. One
    line per job is enough by default: ``--verbose`` keeps all three.

    A retry is one line too: the policy's WARNING ("failed (Type: message); retry n in
    Xs") says what Streaq's "Retrying task" traceback and "↻ retrying" line repeat, as
    do "↳ dependent triggered" and "task <name> (U+00D7) <id> failed" beside the policy's
    ERROR. A job that fails for good keeps Streaq's traceback."""

    _REPEATED = ("→ worker", "■", "retrying in", "retrying at", "↳ dependent",
                 " \u00d7 ")  # Streaq's "task <name> \u00d7 <id> failed"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.ERROR and message.startswith("Retrying task"):
            return False
        if record.levelno != logging.INFO:
            return True
        return not any(mark in message for mark in self._REPEATED)


# Libraries that log at INFO for every request or image: their lines only with --verbose.
_CHATTY_LOGGERS = ("httpx", "pyvips", "botocore", "boto3")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stdout,
    )
    if not verbose:
        logging.getLogger("streaq").addFilter(DropRepeatedJobLines())
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    # The format uses none of the record's thread or process: don't look them up for every
    # record (the logging HOWTO's "Optimization" section).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


@dataclass(frozen=True)
class ProcessOptions:
    """How to run one worker process (``offload worker``'s options)."""

    concurrency: int | None
    state_dir: Path
    verbose: bool
    burst: bool = False
    parent_pid: int | None = None  # a child of --processes N: stop once it is gone


def run_one(settings: Settings, concurrency: int | None, state_dir: Path, verbose: bool,
            burst: bool = False) -> None:
    """Run one worker process until SIGTERM/SIGINT (drains within the grace period),
    reconnecting in place when Redis restarts or stops answering."""
    serve_process(settings, ProcessOptions(concurrency, state_dir, verbose, burst))


def run_child(settings: Settings, options: ProcessOptions) -> None:
    """A child process of :func:`run_workers`: :func:`serve_process`, bound to its parent."""
    if options.parent_pid is not None:
        die_with_parent(options.parent_pid)
    serve_process(settings, options)


def serve_process(settings: Settings, options: ProcessOptions) -> None:
    """Run this process's worker, with its state files and heartbeat, until it stops."""
    import anyio
    from streaq import Worker

    from worker.app import build_worker
    from worker.redis_watchdog import supervise
    from worker.task_protection import BusyMarker, agent_uri, protected_while_busy

    _configure_logging(options.verbose)
    worker_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    files = StateFiles(options.state_dir, os.getpid())
    # One marker for the process: it outlives the workers rebuilt after a Redis fault.
    busy = BusyMarker(files.busy_file) if agent_uri() else None

    def build() -> Worker[Any]:
        # The same id each time the supervisor starts the worker again after a Redis
        # fault: the state file names it.
        worker = build_worker(settings, worker_id=worker_id, concurrency=options.concurrency,
                              freeze_after_start=True, on_busy=busy)
        worker.burst = options.burst
        return worker

    build()  # fail fast on a broken catalogue, before writing the state file

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_alive, files.beat_file, options.parent_pid)
            await supervise(build, settings)
            tg.cancel_scope.cancel()

    forget_dead(options.state_dir)
    files.write(worker_id)
    try:
        if options.parent_pid is None:  # the task's only process keeps its protection
            with protected_while_busy(settings, options.state_dir):
                anyio.run(serve)
        else:
            anyio.run(serve)
    finally:
        files.remove()
    log.info("worker %s stopped", worker_id)


def run_workers(processes: int, concurrency: int | None, *, state_dir: Path = DEFAULT_STATE_DIR,
                verbose: bool = False, burst: bool = False) -> int:
    """Run ``processes`` worker processes; forward SIGTERM/SIGINT; exit when all have."""
    settings = get_settings()
    if problems := production_problems(settings):
        raise SystemExit("offload worker: refusing to start in production:\n  - "
                         + "\n  - ".join(problems))
    if processes <= 1:
        run_one(settings, concurrency, state_dir, verbose, burst)
        return 0
    from worker.task_protection import protected_while_busy

    _configure_logging(verbose)
    options = ProcessOptions(concurrency, state_dir, verbose, burst, parent_pid=os.getpid())
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=run_child, args=(settings, options), name=f"offload-worker-{i}")
        for i in range(processes)
    ]

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.pid and child.is_alive():
                os.kill(child.pid, signum)

    # The parent keeps the task's protection for all its children (they mark themselves busy).
    with protected_while_busy(settings, state_dir):
        for child in children:
            child.start()
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for child in children:
            child.join()
    return max((child.exitcode or 0) for child in children)
