"""``await progress(fraction, message)``: any job says how far it got, for the status API.

The retry policy gives each run a :class:`ProgressReporter` (through :data:`REPORTER`);
outside a run (a direct call in a test) reporting does nothing. Writes are throttled to one
per :data:`MIN_INTERVAL_SECONDS` per job, except the final ``1.0``, which is always written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from shared.queue import Keys
from shared.queue.progress import Progress, write_progress

log = logging.getLogger("offload.worker")

MIN_INTERVAL_SECONDS = 0.5


class ProgressReporter:
    """Writes one job's progress to Redis, at most once per :data:`MIN_INTERVAL_SECONDS`."""

    def __init__(self, redis: Any, keys: Keys, job_id: str, ttl_seconds: int,
                 on_write: Callable[[Progress], None] | None = None) -> None:
        self._on_write = on_write  # told of each stored update (job events)
        self._redis = redis
        self._keys = keys
        self._job_id = job_id
        self._ttl = ttl_seconds
        self._last_write = float("-inf")

    async def report(self, fraction: float, message: str) -> bool:
        """Store the progress unless the last write was too recent; whether it was."""
        update = Progress.now(fraction, message)  # ValueError for a fraction outside [0, 1]
        moment = time.monotonic()
        if update.fraction < 1.0 and moment - self._last_write < MIN_INTERVAL_SECONDS:
            return False
        self._last_write = moment
        try:
            await write_progress(self._redis, self._keys, self._job_id, update, self._ttl)
        except Exception as exc:  # progress is informative: never fail the job for it
            log.warning("job %s: progress not recorded: %s: %s", self._job_id,
                        type(exc).__name__, exc)
            return False
        if self._on_write is not None:
            self._on_write(update)
        return True


#: The running job's reporter, set by the retry policy for the duration of each run.
REPORTER: ContextVar[ProgressReporter | None] = ContextVar("offload_progress", default=None)


async def progress(fraction: float, message: str = "") -> None:
    """Report that the running job is ``fraction`` (0 to 1) done, doing ``message``."""
    reporter = REPORTER.get()
    if reporter is None:
        Progress.now(fraction, message)  # the same check as in a run
        return
    await reporter.report(fraction, message)
