"""Guards around Streaq 7.2's at-least-once delivery, so a second delivery of a job costs
at most a second run and never a wrong result, and a stopping worker hands on at once
what it fetched and did not start.

Streaq hands a message to one worker; if that worker's heartbeat does not renew it for
``idle_timeout`` (it died, or its event loop was starved), another worker reclaims and
runs it. Each worker also fetches up to ``prefetch`` messages beyond its free slots (a
buffer: a finished job's slot is refilled without a round trip to Redis), and the heartbeat
renews only running jobs, not buffered messages. What that allowed, and the guard for each
(``tests/faults/test_worker_kill.py``, ``tests/faults/test_sigterm_drain.py``,
``tests/test_redelivery.py``):

- A buffered message that waits longer than the idle timeout may be reclaimed by the same
  worker (its fetch reclaims idle messages first), which then holds two copies of it: the
  second would run beside the first. :func:`run_each_message_once` drops a copy whose
  message is already running in this worker. (Reclaimed by *another* worker, the first
  holder's copy is refused by Streaq itself: before running, it checks that the message is
  still its own.)
- When the slower of two copies of a job reaches it after the faster one finished (and
  deleted the task), Streaq fails it as "Task expired!" and overwrites the stored success
  with that failure: :func:`drop_finished_copies` drops such a copy instead.
- A worker that stops (SIGTERM, the end of a burst) leaves its buffered messages pending
  under its name: another worker would take them only after the idle timeout.
  :func:`release_unstarted` marks them reclaimable at once.
"""

from __future__ import annotations

import logging
from typing import Any

from coredis.response.types import StreamPendingExt
from streaq import Worker
from streaq.constants import REDIS_GROUP
from streaq.types import StreaqError

log = logging.getLogger("offload.worker")

# Streaq 7.2's message for a task whose data is gone (worker.py, run_task).
EXPIRED = "Task expired!"


def set_prefetch(worker: Worker[Any], prefetch: int | None) -> None:
    """Fetch up to ``prefetch`` messages beyond the free slots (None: Streaq's default, as
    many as the concurrency; 0: only for free slots)."""
    if prefetch is not None:
        worker.prefetch = worker.concurrency + prefetch


def run_each_message_once(worker: Worker[Any]) -> None:
    """Drop a second copy of a message that is running in this worker already."""
    run = worker.run_task

    async def run_task(msg: Any) -> None:
        if msg.message_id in worker._running_tasks[msg.priority]:
            log.info("job %s is already running in this worker; dropped a second copy",
                     msg.task_id)
            return None
        return await run(msg)

    worker.run_task = run_task  # type: ignore[method-assign]


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


async def release_unstarted(worker: Worker[Any]) -> int:
    """Once ``worker`` has stopped running jobs: make every message still pending under its
    name (fetched, never started) reclaimable by other workers now rather than after the
    idle timeout. Returns how many it released."""
    released = 0
    limit = max(100, 2 * worker.prefetch)
    for priority in worker.priorities:
        stream = worker.stream_key + priority
        pending = await worker.redis.xpending(
            stream, REDIS_GROUP, start="-", end="+", count=limit, consumer=worker.id
        )
        ids = [entry.identifier for entry in pending if isinstance(entry, StreamPendingExt)]
        if ids:
            # Idle as long as the idle timeout: what a reclaiming fetch looks for (Streaq
            # marks a cancelled job's message the same way).
            await worker.redis.xclaim(stream, REDIS_GROUP, worker.id, 0, ids,
                                      justid=True, idle=worker.idle_timeout)
            released += len(ids)
    if released:
        log.info("worker %s handed on %d fetched job(s) it did not start", worker.id,
                 released)
    return released
