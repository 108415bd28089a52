"""Publishing a job once, whatever process dies between any two Redis commands.

Three steps, each one round trip (docs/QUEUE.md has the design and every crash point):

1. **Reserve**: one ``MULTI`` writes the job's metadata (``SET NX GET``; a pipeline's step
   metadata too) and takes the short publish lock (``SET NX PX``). Whoever created the
   metadata holds the lock; a call that finds metadata gets it back instead.
2. **Publish** through Streaq's public API (``enqueue_unsafe``, ``Task.start``, ``await``).
   Streaq's publish is ``SET NX`` on the task: while the task is unfinished, a second
   publish of the same id does nothing.
3. **Mark** the metadata published (the lock lapses by itself).

An id minted by the call itself (random) cannot be replayed, so :meth:`Publisher.
publish_fresh` writes the metadata and publishes at the same time instead.

A call that finds unpublished metadata waits while the lock is held; once the lock is
free (its holder died) it takes the lock and repairs: if Streaq knows the task, it only
marks it, otherwise it publishes it from the stored metadata. A holder that was stalled
for half the lease does not publish blindly: it goes through the same repair check.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from coredis import PureToken
from streaq import Worker
from streaq.task import Task, TaskStatus

from shared.errors import Conflict, QueueUnavailable
from shared.jobs import CATALOGUE, job_context
from shared.queue.keys import Keys, now_ms
from shared.queue.meta import JobMeta

log = logging.getLogger("offload.queue")

_FIRST_POLL_SECONDS = 0.005
_MAX_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Plan:
    """A job to publish: its id, its metadata, and its pipeline steps' metadata.
    ``caller_chosen_id``: the caller named the id (a deterministic id, such as an upload's),
    so it is checked against Streaq before the first publish. Ids minted here (random, or
    derived from the owner and an idempotency key) are not."""

    job_id: str
    meta: JobMeta
    steps: tuple[tuple[str, JobMeta], ...] = ()
    caller_chosen_id: bool = False
    # Counted among the owner's unfinished jobs (shared/limits.py) until this time (ms);
    # 0: not counted.
    unfinished_until_ms: int = 0


def build_task(streaq: Worker[Any], job_id: str, meta: JobMeta) -> Task[Any, Any]:
    """The Streaq task (a pipeline's last step) that publishes the job ``meta`` describes."""
    spec = CATALOGUE[meta.name]
    context = job_context(meta.owner, meta.correlation_id, meta.profile)
    # Only the first task knows when it could start (the worker's QueueWait): a later
    # step becomes ready when the step before it finishes.
    first_context = job_context(meta.owner, meta.correlation_id, meta.profile,
                                ready_ms=max(meta.created_ms, meta.run_at_ms))
    delay_ms = max(0, meta.run_at_ms - now_ms()) if meta.run_at_ms else 0
    delay = timedelta(milliseconds=delay_ms) if delay_ms else None
    priority = meta.priority or spec.priority
    # Streaq's task data expires with the job's metadata (its start, every try, the
    # retention), through ``expire`` of enqueue_unsafe's per-call stand-in registration:
    # without it a job scheduled far ahead keeps its data for ever if it is lost.
    expire = timedelta(seconds=meta.ttl_s)
    if not spec.is_pipeline:
        task = streaq.enqueue_unsafe(spec.name, **meta.data, **first_context)
        task.parent.expire = expire
        task.id = job_id
        return task.start(delay=delay, priority=priority)
    first, *rest = spec.steps[meta.first_step:]
    step_ids = meta.step_ids
    tail = streaq.enqueue_unsafe(first, **meta.data, **first_context)
    tail.parent.expire = expire
    tail.id = step_ids[0]
    tail.start(delay=delay, priority=priority)
    for step_name, step_id in zip(rest, step_ids[1:], strict=True):
        # ``parent`` is enqueue_unsafe's stand-in for a task this process does not register;
        # the previous step's result is its positional argument, the context its keyword.
        stand_in = streaq.enqueue_unsafe(step_name).parent
        stand_in.expire = expire
        tail = tail.then(stand_in, **context)  # type: ignore[call-overload]
        tail.id = step_id
        tail.start(priority=priority)
    return tail


class Publisher:
    """Runs the reserve / publish / mark protocol for one queue."""

    def __init__(self, streaq: Worker[Any], keys: Keys, lease_seconds: float,
                 index_retention_seconds: int = 0) -> None:
        self.streaq = streaq
        self.keys = keys
        self.lease_seconds = lease_seconds
        # How long a job stays in its owner's listing index (0: not indexed).
        self.index_retention_seconds = index_retention_seconds

    def _index(self, pipe: Any, plan: Plan) -> None:
        """Add the job to its owner's index (first score wins, so a replay keeps its
        place), drop entries past retention, and keep the index alive that long."""
        retention = self.index_retention_seconds
        if not retention:
            return
        index = self.keys.owner_jobs(plan.meta.owner)
        pipe.zadd(index, {plan.job_id: plan.meta.created_ms}, condition=PureToken.NX)
        pipe.zremrangebyscore(index, 0, plan.meta.created_ms - retention * 1000)
        pipe.expire(index, retention)
        if plan.unfinished_until_ms:
            open_jobs = self.keys.unfinished(plan.meta.owner)
            pipe.zadd(open_jobs, {plan.job_id: plan.unfinished_until_ms}, condition=PureToken.NX)
            # Lives as long as its latest entry: NX gives a new set its expiry, GT extends it.
            lifetime = plan.unfinished_until_ms - plan.meta.created_ms + 60_000
            pipe.pexpire(open_jobs, lifetime, condition=PureToken.NX)
            pipe.pexpire(open_jobs, lifetime, condition=PureToken.GT)

    async def enqueue(self, plan: Plan, accept: Callable[[JobMeta], None]) -> tuple[bool, JobMeta]:
        """Publish ``plan`` once. Returns whether this call created the job, and the
        job's metadata. ``accept`` is shown metadata found under the id, and raises
        :class:`Conflict` when it belongs to someone else or to another job."""
        poll = _FIRST_POLL_SECONDS
        deadline = time.monotonic() + 2 * self.lease_seconds + 1
        while True:
            token = uuid.uuid4().hex
            started = time.monotonic()
            existing, locked = await self._reserve(plan, token)
            if existing is None and locked:
                if await self._first_publish(plan, started):
                    return True, plan.meta.marked_published()
                continue  # stalled past the lease: settle it as a replay would
            if existing is not None:
                settled = await self._settle(plan.job_id, existing, locked, accept)
                if settled is not None:
                    return False, settled
            if time.monotonic() > deadline:
                raise QueueUnavailable("the job is still being published by another call")
            await asyncio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL_SECONDS)

    async def publish_fresh(self, plan: Plan) -> JobMeta:
        """A job under an id minted here (random: no other call can know it, so there is
        nothing to wait for or repair): its metadata, already marked published, and its
        task are written at once, in one round trip's time."""
        meta = plan.meta.marked_published()
        write = asyncio.ensure_future(self._write_fresh(plan, meta))
        try:
            await build_task(self.streaq, plan.job_id, meta)
        finally:
            await write  # its own failure, if any, surfaces here
        return meta

    async def _write_fresh(self, plan: Plan, meta: JobMeta) -> None:
        ttl = meta.ttl_s
        async with self.streaq.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.job(plan.job_id), meta.to_json(), ex=ttl)
            for step_id, step_meta in plan.steps:
                pipe.set(self.keys.job(step_id), step_meta.to_json(), ex=ttl)
            self._index(pipe, plan)

    async def _reserve(self, plan: Plan, token: str) -> tuple[JobMeta | None, bool]:
        """Step 1: the metadata unless it exists (then: the stored one), and the lock."""
        ttl = plan.meta.ttl_s
        async with self.streaq.redis.pipeline(transaction=True) as pipe:
            previous = pipe.set(self.keys.job(plan.job_id), plan.meta.to_json(),
                                condition=PureToken.NX, get=True, ex=ttl)
            for step_id, step_meta in plan.steps:
                pipe.set(self.keys.job(step_id), step_meta.to_json(), condition=PureToken.NX,
                         ex=ttl)
            lock = pipe.set(self.keys.publish_lock(plan.job_id), token,
                            condition=PureToken.NX, px=round(self.lease_seconds * 1000))
            self._index(pipe, plan)
        raw = await previous
        return (JobMeta.from_json(str(raw)) if raw else None), bool(await lock)

    async def _first_publish(self, plan: Plan, started: float) -> bool:
        """Steps 2 and 3 for the call that created the job. False (nothing published) when
        it took so long that its lock may have passed to another call."""
        streaq = self.streaq
        if plan.caller_chosen_id and await streaq.status_by_id(plan.job_id) != TaskStatus.NOT_FOUND:
            # Streaq holds a task of this id that we have no metadata for: not ours.
            await self._forget(plan)
            raise Conflict("this job id is taken")
        if time.monotonic() - started > self.lease_seconds / 2:
            log.warning("job %s: publish stalled past half its lease; re-checking",
                        plan.job_id)
            return False
        await build_task(streaq, plan.job_id, plan.meta)
        await self._mark(plan.job_id, plan.meta)
        return True

    async def _settle(self, job_id: str, existing: JobMeta, locked: bool,
                      accept: Callable[[JobMeta], None]) -> JobMeta | None:
        """The job found under ``job_id``, published (or repaired) unless another call is
        publishing it (None: wait)."""
        try:
            accept(existing)
        except Conflict:
            if locked:
                await self._release(job_id)
            raise
        if existing.published:
            if locked:
                await self._release(job_id)
            return existing
        if not locked:
            return None
        await self._repair(job_id, existing)
        return existing.marked_published()

    async def _repair(self, job_id: str, meta: JobMeta) -> None:
        """Publish a job whose creator died before marking it, unless Streaq has it."""
        streaq = self.streaq
        status = await streaq.status_by_id(job_id)
        aborted = await streaq.redis.exists([self.keys.aborted(job_id)])
        if status == TaskStatus.NOT_FOUND and not aborted:
            log.warning("job %s: its enqueue stopped before publishing; publishing it now",
                        job_id)
            await build_task(streaq, job_id, meta)
        await self._mark(job_id, meta)

    async def _mark(self, job_id: str, meta: JobMeta) -> None:
        """Step 3: metadata marked published (its expiry kept). The lock is left to lapse:
        nothing consults it once the metadata says published."""
        await self.streaq.redis.set(self.keys.job(job_id), meta.marked_published().to_json(),
                                    condition=PureToken.XX, keepttl=True)

    async def _release(self, job_id: str) -> None:
        await self.streaq.redis.delete([self.keys.publish_lock(job_id)])

    async def _forget(self, plan: Plan) -> None:
        keys = [self.keys.job(plan.job_id), self.keys.publish_lock(plan.job_id)]
        keys.extend(self.keys.job(step_id) for step_id, _ in plan.steps)
        async with self.streaq.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys)
            pipe.zrem(self.keys.owner_jobs(plan.meta.owner), [plan.job_id])
            pipe.zrem(self.keys.unfinished(plan.meta.owner), [plan.job_id])
