"""The run record (start time, try) of each job still running after a moment, in Redis
for the status API. A short job writes none: the status of a finished job comes from its
result."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.queue import now_ms

log = logging.getLogger("offload.worker")

# A run still going after this long writes its start time and try.
RUN_RECORD_AFTER_SECONDS = 0.1


class RunRecorder:
    """Writes the run record of each job still running after
    :data:`RUN_RECORD_AFTER_SECONDS`.

    One check that often for all of a worker's running jobs, by a task that lives while
    any job runs, rather than a timer per job: a short job costs a dict insert and pop."""

    def __init__(self, worker: Any, retention_seconds: int) -> None:
        self._worker = worker
        self._retention = retention_seconds
        # run key -> [started_ms, tries, recorded]
        self._running: dict[str, list[int]] = {}
        self._ticker: asyncio.Task[None] | None = None

    def started(self, key: str, tries: int) -> None:
        self._running[key] = [now_ms(), tries, 0]
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def finished(self, key: str) -> None:
        self._running.pop(key, None)

    async def _tick(self) -> None:
        while self._running:
            await asyncio.sleep(RUN_RECORD_AFTER_SECONDS)
            due_ms = now_ms() - round(RUN_RECORD_AFTER_SECONDS * 1000)
            due = [(key, run) for key, run in self._running.items()
                   if not run[2] and run[0] <= due_ms]
            if not due:
                continue
            try:
                async with self._worker.redis.pipeline(transaction=False) as pipe:
                    for key, (started_ms, tries, _) in due:
                        pipe.hset(key, {"started_ms": str(started_ms), "tries": str(tries)})
                        pipe.expire(key, self._retention)
            except Exception as exc:  # the jobs go on; only their "started at" is missing
                log.warning("could not record %d run(s): %s: %s", len(due),
                            type(exc).__name__, exc)
            for _, run in due:
                run[2] = 1
