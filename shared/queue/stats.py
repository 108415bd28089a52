"""The autoscaling signal's inputs, from Streaq's public reads (``queue_size``,
``get_tasks_by_status``) and Offload's worker presence: no Streaq key names, no SCAN."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coredis.exceptions import ResponseError
from streaq import Worker
from streaq.task import TaskInfo, TaskStatus

from shared.queue.keys import Keys
from shared.queue.meta import JobMeta
from shared.queue.presence import count_live

# Running jobs are read one by one (at most workers x concurrency of them).
RUNNING_LIMIT = 10_000
# Scheduled jobs are read earliest first, up to this many, to count the due ones: past it
# the due count is a lower bound (already enough to wake and scale the service).
DUE_SAMPLE = 1_000
# Not-yet-delivered jobs read to find the oldest one waiting.
OLDEST_SAMPLE = 100
# Redis's reply to XINFO STREAM on a stream that does not exist.
_NO_SUCH_KEY = "no such key"


@dataclass(frozen=True)
class QueueStats:
    """The autoscaling signal's inputs, read in one pass."""

    queued: int
    due_scheduled: int
    scheduled: int
    running: int
    workers: int
    oldest_age_seconds: float

    @property
    def depth(self) -> int:
        return self.queued + self.due_scheduled

    @property
    def jobs(self) -> int:
        """The work the workers have: jobs waiting (``depth``) or running."""
        return self.depth + self.running


def _ms(moment: datetime | None) -> int | None:
    return round(moment.timestamp() * 1000) if moment is not None else None


async def read_stats(streaq: Worker[Any], keys: Keys, now: int) -> QueueStats:
    """Queue depth, running jobs, live workers and the oldest waiting job's age at ``now``.

    A stream entry lives from enqueue until its task finishes, so every entry that is not
    running is backlog: never delivered, or prefetched by a worker and waiting for a slot.
    """
    in_streams = await streaq.queue_size(include_scheduled=False)
    scheduled_total = await streaq.queue_size(include_scheduled=True) - in_streams
    running = await streaq.get_tasks_by_status(TaskStatus.RUNNING, limit=RUNNING_LIMIT)
    due: list[TaskInfo] = []
    if scheduled_total:
        sample = await streaq.get_tasks_by_status(
            TaskStatus.SCHEDULED, limit=min(scheduled_total, DUE_SAMPLE))
        due = [info for info in sample if (_ms(info.scheduled) or now) <= now]
    waiting = await _queued(streaq, OLDEST_SAMPLE)
    since = [_ms(info.scheduled) or now for info in due]
    since.extend(await _waiting_since(streaq, keys, waiting))
    oldest = min(since, default=now)
    return QueueStats(
        queued=max(0, in_streams - len(running)),
        due_scheduled=len(due),
        scheduled=max(0, scheduled_total - len(due)),
        running=len(running),
        workers=await count_live(streaq.redis, keys, now),
        oldest_age_seconds=max(0.0, (now - oldest) / 1000),
    )


async def _queued(streaq: Worker[Any], limit: int) -> list[TaskInfo]:
    """Streaq's not-yet-delivered tasks, priority by priority."""
    found: list[TaskInfo] = []
    for tasks in (await queued_by_priority(streaq, limit)).values():
        found += tasks
    return found


async def queued_by_priority(streaq: Worker[Any], limit: int) -> dict[str, list[TaskInfo]]:
    """Up to ``limit`` not-yet-delivered tasks of each priority."""
    found: dict[str, list[TaskInfo]] = {}
    for priority in streaq.priorities:
        try:
            found[priority] = await streaq.get_tasks_by_status(
                TaskStatus.QUEUED, priority=priority, limit=limit)
        except ResponseError as exc:
            # Streaq 7.2 fails on a priority nothing was published to yet (docs/UPSTREAM.md).
            if _NO_SUCH_KEY not in str(exc):
                raise
            found[priority] = []
    return found


async def _waiting_since(streaq: Worker[Any], keys: Keys, waiting: list[TaskInfo]) -> list[int]:
    """When each queued task became runnable: its enqueue time, or, for a job enqueued
    with a delay, the time it was due (from Offload's metadata)."""
    if not waiting:
        return []
    raws = await streaq.redis.mget([keys.job(info.task_id) for info in waiting])
    since = []
    for info, raw in zip(waiting, raws, strict=True):
        due_ms = JobMeta.from_json(str(raw)).run_at_ms if raw else 0
        since.append(max(info.created_time, due_ms))
    return since
