"""Guards around Streaq 7.2's at-least-once delivery, so a second delivery of a job costs
at most a second run and never a wrong result.

Streaq hands a message to one worker; if that worker's heartbeat does not renew it for
``idle_timeout`` (it died, or its event loop was starved), another worker reclaims and
runs it. Two ways that went wrong, both reproduced by ``tests/faults/test_worker_kill.py``:

- A message waiting in a worker's prefetch buffer is not renewed by its heartbeat (only
  running jobs are), so it is reclaimed from a healthy worker whenever the wait exceeds
  the idle timeout: :func:`limit_prefetch` fetches only as many messages as free slots.
- When the slower of two copies of a job reaches it after the faster one finished (and
  deleted the task), Streaq fails it as "Task expired!" and overwrites the stored
  success with that failure: :func:`drop_finished_copies` drops such a copy instead.
"""

from __future__ import annotations

import logging
from typing import Any

from streaq import Worker
from streaq.constants import REDIS_GROUP
from streaq.types import StreaqError

log = logging.getLogger("offload.worker")

# Streaq 7.2's message for a task whose data is gone (worker.py, run_task).
EXPIRED = "Task expired!"


def limit_prefetch(worker: Worker[Any]) -> None:
    """Fetch a message only when a slot is free to run it at once."""
    worker.prefetch = worker.concurrency


def drop_finished_copies(worker: Worker[Any]) -> None:
    """Make a copy of a job that another worker already finished a no-op."""
    fail = worker.finish_failed_task

    async def finish_failed_task(msg: Any, exc: BaseException, *args: Any,
                                 **kwargs: Any) -> None:
        if isinstance(exc, StreaqError) and str(exc) == EXPIRED:
            stream = worker.stream_key + msg.priority
            mine = await worker.redis.xpending(
                stream, REDIS_GROUP, start=msg.message_id, end=msg.message_id, count=1,
                consumer=worker.id,
            )
            if not mine:  # acknowledged by whoever finished it: nothing left to do
                log.info("job %s already finished by another worker; not running it again",
                         msg.task_id)
                return
        await fail(msg, exc, *args, **kwargs)

    worker.finish_failed_task = finish_failed_task  # type: ignore[method-assign]
