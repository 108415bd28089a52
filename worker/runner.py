"""``offload worker`` and ``offload worker-health``: run workers, and check on them.

Each worker process writes its Streaq worker id to a small state file; the health check
(the container's HEALTHCHECK) reads the ids and asks Redis whether each one's heartbeat key
is still alive. Streaq refreshes that key every 0.9 x idle timeout with a TTL of the idle
timeout, so "present" means "the event loop ran recently and Redis answered".
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from shared.config import Settings, get_settings

log = logging.getLogger("offload.worker")

DEFAULT_STATE_DIR = Path(os.environ.get("OFFLOAD_WORKER_STATE_DIR", "/tmp/offload-worker"))  # noqa: S108


class _DropPerJobLines(logging.Filter):
    """Streaq logs a line as each job starts ("task <name> □ <id> → worker <id>") and one
    as it succeeds ("task <name> ■ <id> ← <result>"). The retry policy's own line ("job
    <name> <id> try n/m correlation_id=...") says more than the first, and a finished job's
    outcome is in its status; failures and retries are logged at WARNING and above. One
    line per job is enough by default: ``--verbose`` keeps all three."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not ("→ worker" in message or "■" in message)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stdout,
    )
    if not verbose:
        logging.getLogger("streaq").addFilter(_DropPerJobLines())
    # The format uses none of the caller's file/line, thread or process: don't compute
    # them for every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def run_one(settings: Settings, concurrency: int | None, state_dir: Path, verbose: bool,
            burst: bool = False) -> None:
    """Run one worker process until SIGTERM/SIGINT (drains within the grace period),
    reconnecting in place when Redis restarts or stops answering."""
    import anyio
    from streaq import Worker

    from worker.app import build_worker
    from worker.supervisor import supervise

    _configure_logging(verbose)
    worker_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:4]}"

    def build() -> Worker[Any]:
        # The same id each time the supervisor starts the worker again after a Redis
        # fault: the health check's state file names it.
        worker = build_worker(settings, worker_id=worker_id, concurrency=concurrency,
                              freeze_after_start=True)
        worker.burst = burst
        return worker

    build()  # fail fast on a broken catalogue, before writing the state file
    state_dir.mkdir(parents=True, exist_ok=True)
    id_file = state_dir / f"{os.getpid()}.id"
    id_file.write_text(worker_id)
    try:
        anyio.run(supervise, build, settings)
    finally:
        id_file.unlink(missing_ok=True)
    log.info("worker %s stopped", worker_id)


def run_workers(processes: int, concurrency: int | None, *, state_dir: Path = DEFAULT_STATE_DIR,
                verbose: bool = False, burst: bool = False) -> int:
    """Run ``processes`` worker processes; forward SIGTERM/SIGINT; exit when all have."""
    settings = get_settings()
    if processes <= 1:
        run_one(settings, concurrency, state_dir, verbose, burst)
        return 0
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=run_one, args=(settings, concurrency, state_dir, verbose, burst),
                    name=f"offload-worker-{i}")
        for i in range(processes)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.pid and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def check_health(settings: Settings, state_dir: Path = DEFAULT_STATE_DIR,
                 timeout: float = 0.8) -> tuple[bool, str]:
    """True when every worker process recorded in ``state_dir`` has a live heartbeat."""
    ids = sorted(p.read_text().strip() for p in state_dir.glob("*.id"))
    if not ids:
        return False, f"no worker ids in {state_dir}"
    import anyio
    from coredis import Redis

    async def probe() -> list[str]:
        client: Redis[str] = Redis.from_url(
            settings.redis_url, decode_responses=True, connect_timeout=timeout,
            stream_timeout=timeout,
        )
        prefix = f"streaq:{settings.queue_name}:health:"
        with anyio.fail_after(timeout):
            async with client:
                return [i for i in ids if not await client.exists([prefix + i])]

    try:
        stale = anyio.run(probe)
    except Exception as exc:
        return False, f"cannot reach Redis: {type(exc).__name__}: {exc}"
    if stale:
        return False, f"no fresh heartbeat for worker(s) {', '.join(stale)}"
    return True, f"{len(ids)} worker(s) healthy"
