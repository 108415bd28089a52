"""A worker process for the throughput benchmark: ``python -m bench.worker_child KIND``.

Both kinds register the same no-op task, named ``noop``, and run in burst mode (exit once
the queue is empty):

- ``bare``: a Streaq worker with only that task, wired as Offload wires every Streaq
  client (``shared.queue.make_streaq``: queue, priorities, signing secret, concurrency).
- ``offload``: exactly what ``offload worker`` runs in each process
  (``worker.runner.run_one``: its logging, the supervisor, ``worker.app.build_worker`` with
  every catalogue task, the lifespan that opens the job clients and the retry-policy
  middleware), with the ``noop`` task added to the worker it builds.

On exit the process prints ``bench-cpu-seconds N`` on stderr: its CPU time from the first
job's start, which the parent divides by the jobs it ran.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASK_NAME = "noop"
_first_job_cpu: list[float] = []


async def noop() -> None:
    if not _first_job_cpu:
        _first_job_cpu.append(time.process_time())


def run_bare() -> None:
    from shared.config import get_settings
    from shared.queue import make_streaq

    settings = get_settings()
    worker = make_streaq(settings, concurrency=settings.worker_concurrency)
    worker.task(name=TASK_NAME)(noop)
    worker.burst = True
    worker.run_sync()


def run_offload() -> None:
    import worker.app
    from shared.config import get_settings
    from worker.runner import run_one

    build_worker = worker.app.build_worker

    def build_with_noop(*args: Any, **kwargs: Any) -> Any:
        built = build_worker(*args, **kwargs)
        built.task(name=TASK_NAME)(noop)
        return built

    worker.app.build_worker = build_with_noop
    with tempfile.TemporaryDirectory(prefix="offload-bench-worker-") as state:
        run_one(get_settings(), None, Path(state), verbose=False, burst=True)


def main(argv: list[str]) -> int:
    runners = {"bare": run_bare, "offload": run_offload}
    if len(argv) != 1 or argv[0] not in runners:
        print("usage: python -m bench.worker_child bare|offload", file=sys.stderr)
        return 2
    runners[argv[0]]()
    if _first_job_cpu:
        print(f"bench-cpu-seconds {time.process_time() - _first_job_cpu[0]:.6f}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
