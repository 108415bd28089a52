"""Helpers the fault tests share: enqueue many real jobs, wait for them, list the jobs
Streaq reports running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from streaq.task import TaskStatus

from shared.queue import JobQueue, JobView


async def enqueue_fetches(queue: JobQueue, urls: Sequence[str], owner: str,
                          batch: int = 100) -> list[str]:
    """Enqueue one ``fetch_external_data`` job per URL, ``batch`` at a time; their ids."""
    ids: list[str] = []
    for start in range(0, len(urls), batch):
        jobs = await asyncio.gather(*(
            queue.enqueue("fetch_external_data", {"url": url}, owner=owner)
            for url in urls[start:start + batch]
        ))
        ids.extend(job.id for job in jobs)
    return ids


async def views(queue: JobQueue, ids: Sequence[str], owner: str,
                batch: int = 50) -> list[JobView]:
    out: list[JobView] = []
    for start in range(0, len(ids), batch):
        out.extend(await asyncio.gather(*(queue.view(i, owner) for i in ids[start:start + batch])))
    return out


async def wait_finished(queue: JobQueue, ids: Sequence[str], owner: str,
                        timeout: float) -> list[JobView]:
    """Poll until every job finished (or ``timeout``); the last views."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    finished: dict[str, JobView] = {}
    while pending and time.monotonic() < deadline:
        for view in await views(queue, pending, owner):
            if view.finished:
                finished[view.id] = view
        pending = [i for i in pending if i not in finished]
        if pending:
            await asyncio.sleep(0.2)
    last = {v.id: v for v in await views(queue, pending, owner)} if pending else {}
    return [finished.get(i) or last[i] for i in ids]


async def running_ids(queue: JobQueue) -> set[str]:
    """The ids of jobs some worker has started and not finished."""
    running = await queue.streaq.get_tasks_by_status(TaskStatus.RUNNING, limit=100_000)
    return {info.task_id for info in running}


async def wait_drained(queue: JobQueue, timeout: float, interval: float = 0.5) -> float:
    """Poll the queue's stats (cheap, unlike per-job views) until nothing is queued,
    due or running; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        stats = await queue.stats()
        if stats.depth == 0 and stats.running == 0 and stats.scheduled == 0:
            break
        await asyncio.sleep(interval)
    return time.monotonic() - started
