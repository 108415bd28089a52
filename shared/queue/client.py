"""``JobQueue``: enqueue catalogue jobs by name, read them, wait for them, abort them.

It wraps a client-only Streaq ``Worker`` (built by :func:`make_streaq`, as every process
builds it), so ``functions/`` can enqueue without importing task code. Streaq is used
through its public API only; beside its task Offload keeps its own metadata per job
(:mod:`shared.queue.meta`), which makes ownership, idempotency keys, deterministic ids
and dead letters work without MongoDB.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from streaq import Worker
from streaq.task import TaskResult, TaskStatus
from streaq.types import StreaqError

from shared.config import Settings
from shared.errors import Conflict, NotFound, ReplicationUnconfirmed
from shared.jobs import CATALOGUE, RESERVED_OWNERS, JobSpec
from shared.queue import outcomes
from shared.queue.connection import Connection
from shared.queue.dead_letters import (
    DeadLetter,
    forget_dead_letter,
    list_dead_letters,
    load_dead_letters,
)
from shared.queue.keys import Keys, deterministic_job_id, now_ms
from shared.queue.listing import Cursor, IndexScan, JobFilter
from shared.queue.meta import JobMeta, encode_payload, payload_digest
from shared.queue.progress import Progress, read_progress
from shared.queue.publish import Plan, Publisher
from shared.queue.replication import confirm_replicated
from shared.queue.stats import QueueStats, queued_by_priority, read_stats
from shared.queue.views import (
    ENQUEUE_INCOMPLETE,
    EnqueuedJob,
    JobView,
    base_view,
    finished_view,
    read_view,
)

log = logging.getLogger("offload.queue")

# How long the call that reserved a job may take to publish it before another call may
# take over (docs/QUEUE.md): far above one round trip, well below an API timeout.
PUBLISH_LEASE_SECONDS = 5.0
# A listing reads at most this many index entries per request (a page of a rare status
# may come back short, with a cursor to go on from), and builds this many views at once.
LIST_MAX_EXAMINED = 500
LIST_CONCURRENCY = 16
# With a status filter, views are built at least this many at a time.
LIST_MIN_SLICE = 10
# How often a progress long-poll reads the job's progress (one GET) and status.
PROGRESS_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class JobPage:
    """One page of an owner's jobs, newest first, and the cursor of the next page."""

    items: list[JobView]
    next: str | None


def _accept(found: JobMeta, wanted: JobMeta, job_id: str) -> None:
    """A replay may see the job it asks for; anything else under the id is a conflict
    that reveals nothing of another owner's job."""
    if found.owner != wanted.owner:
        raise Conflict("this job id is taken")
    if not found.same_job(wanted):
        raise Conflict("this Idempotency-Key was used with a different job or payload",
                       {"job_id": job_id})


# The retry policy's longest backoff between tries (worker/retry_policy.py).
MAX_BACKOFF_SECONDS = 300
# The furthest ahead a job may be scheduled (delay_seconds or run_at): every key a job
# writes expires after its start, so this bounds how long a caller can hold memory.
MAX_DELAY_SECONDS = 30 * 24 * 3600


@dataclass
class JobQueue:
    """Enqueue and inspect Offload jobs. Enter with ``async with`` (or :meth:`connect`).

    One instance per process; it stays connected across calls. ``functions/`` keeps one per
    Lambda container on a persistent event loop (see :mod:`shared.aio`).
    """

    settings: Settings
    publish_lease_seconds: float = PUBLISH_LEASE_SECONDS
    _conn: Connection = field(init=False)

    def __post_init__(self) -> None:
        self._conn = Connection(self.settings)
        self.keys = Keys(self.settings.queue_name)
        # A job stays listed as long as the metadata of a job enqueued without delay lives.
        self.index_retention_seconds = max(self._meta_ttl(spec, 0) for spec in CATALOGUE.values())

    # --- connection --------------------------------------------------------------------

    async def __aenter__(self) -> JobQueue:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        await self._conn.connect()

    async def aclose(self) -> None:
        await self._conn.aclose()

    async def reset(self) -> None:
        """Drop the connection (after a SnapStart restore, or a Redis failover)."""
        await self._conn.reset()

    @property
    def streaq(self) -> Worker[Any]:
        return self._conn.streaq

    @property
    def redis(self) -> Any:
        return self._conn.streaq.redis

    async def ping(self) -> bool:
        return bool(await self._conn.call(lambda: self.redis.ping()))

    # --- enqueue -----------------------------------------------------------------------

    async def enqueue(  # noqa: PLR0913, RUF100 - the API's options, keyword-only, each optional
        self,
        name: str,
        payload: dict[str, Any],
        *,
        owner: str,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        delay_seconds: float | None = None,
        run_at: datetime | None = None,
        priority: str | None = None,
        correlation_id: str | None = None,
        profile: dict[str, str] | None = None,
        replay_of: str | None = None,
        from_step: int = 0,
    ) -> EnqueuedJob:
        """Validate ``payload`` against the catalogue and enqueue job ``name`` for ``owner``.
        ``profile``: the caller's e-mail and name claims, handed to the job with its owner.
        ``replay_of``: a job of the same owner this one replays (NotFound otherwise).
        ``from_step``: a pipeline resumed at this step, ``payload`` being that step's input.

        The same ``job_id`` (or the same ``idempotency_key`` from the same owner) while the
        job is remembered returns the existing job instead of creating a second one; the
        same key with a different payload, or another owner's id, is a :class:`Conflict`.
        """
        spec = CATALOGUE.get(name)
        if spec is None:
            raise NotFound(f"unknown job {name!r}")
        chain = spec.steps[from_step:]
        if spec.is_pipeline and not 0 <= from_step < len(spec.steps):
            raise ValueError(f"{name} has no step {from_step}")
        model = CATALOGUE[chain[0]] if spec.is_pipeline and from_step else spec
        data = model.validate(payload).model_dump(mode="json")
        if replay_of is not None:
            await self._owned(replay_of, owner)  # only a job of the caller's own
        prio = priority or spec.priority
        if prio not in self.settings.priorities:
            raise ValueError(f"priority must be one of {self.settings.priorities}")
        if delay_seconds and run_at:
            raise ValueError("give delay_seconds or run_at, not both")
        delay = delay_seconds or 0.0
        if run_at is not None:
            delay = max(0.0, (run_at - datetime.now(UTC)).total_seconds())
        if delay > MAX_DELAY_SECONDS:
            raise ValueError(f"a job may start at most {MAX_DELAY_SECONDS // 86400} days ahead")
        chosen = job_id is not None and idempotency_key is None
        fresh = job_id is None and idempotency_key is None
        if idempotency_key is not None:
            job_id = deterministic_job_id("idempotency", owner, idempotency_key)
        job_id = job_id or uuid.uuid4().hex
        created_ms = now_ms()
        step_ids: tuple[str, ...] = ()
        if spec.is_pipeline:
            step_ids = (*(f"{job_id}-{i}" for i in range(len(chain) - 1)), job_id)
        run_at_ms = created_ms + round(delay * 1000) if delay > 0 else 0
        meta = JobMeta(name=spec.name, owner=owner, created_ms=created_ms,
                       payload=encode_payload(data), digest=payload_digest(data),
                       ttl_s=self._meta_ttl(spec, delay), correlation_id=correlation_id or "",
                       priority=prio, run_at_ms=run_at_ms, steps=",".join(step_ids),
                       caller_email=(profile or {}).get("email") or "",
                       caller_name=(profile or {}).get("name") or "",
                       replay_of=replay_of or "", first_step=from_step)
        steps = tuple((step_id, meta.for_step(step_name, job_id))
                      for step_name, step_id in zip(chain[:-1], step_ids[:-1], strict=True))
        plan = Plan(job_id, meta, steps, caller_chosen_id=chosen,
                    unfinished_until_ms=self._unfinished_until(spec, owner, meta))
        job = await self._conn.call(lambda: self._enqueue(plan, fresh=fresh))
        await self._confirm_replicated(job)
        return job

    async def _confirm_replicated(self, job: EnqueuedJob) -> None:
        """Return once a replica holds ``job`` (and everything written before it), at
        once when the wait is off; raise :class:`ReplicationUnconfirmed` when none confirmed
        it within the wait. Replays wait too: their answer promises what the first's did."""
        wait_ms = self.settings.replica_wait_ms
        if not wait_ms:
            return
        if await self._conn.call(lambda: confirm_replicated(self.redis, self.keys, wait_ms)):
            return
        log.warning("job %s: no replica confirmed it within %d ms", job.id, wait_ms)
        raise ReplicationUnconfirmed(
            f"job {job.id} is enqueued but no replica confirmed it within {wait_ms} ms, so "
            "a failover could still lose it. Sending the same request with the same "
            "Idempotency-Key again is safe (it returns this job and waits again); without "
            f"a key, read GET /jobs/{job.id} before sending it again.",
            {"job_id": job.id, "created": job.created})

    def _unfinished_until(self, spec: JobSpec, owner: str, meta: JobMeta) -> int:
        """The latest time the job could still be unfinished: its start, then every try of
        every task at its timeout plus the longest backoff (0: not counted, because neither
        the unfinished-jobs quota nor fair share's demotion needs it, or a system job)."""
        s = self.settings
        counted = s.limit_unfinished_jobs > 0 or s.fair_share_demote_after > 0
        if not counted or owner in RESERVED_OWNERS:
            return 0
        tasks = ([CATALOGUE[step] for step in spec.steps[meta.first_step:]]
                 if spec.is_pipeline else [spec])
        run_for = sum((t.timeout_seconds + MAX_BACKOFF_SECONDS) * t.max_tries for t in tasks)
        return max(meta.created_ms, meta.run_at_ms) + (run_for + 60) * 1000

    def _meta_ttl(self, spec: JobSpec, delay: float) -> int:
        run_for = spec.timeout_seconds * spec.max_tries + spec.max_tries**2
        keep = max(spec.result_ttl_seconds or self.settings.result_retention_seconds,
                   self.settings.idempotency_ttl_seconds)
        return int(delay) + run_for + keep + 60

    async def _enqueue(self, plan: Plan, *, fresh: bool) -> EnqueuedJob:
        publisher = Publisher(self.streaq, self.keys, self.publish_lease_seconds,
                              self.index_retention_seconds)
        if fresh:
            created, meta = True, await publisher.publish_fresh(plan)
        else:
            created, meta = await publisher.enqueue(
                plan, lambda found: _accept(found, plan.meta, plan.job_id))
        if created:
            later = meta.run_at_ms > 0 or bool(meta.steps)
            return EnqueuedJob(plan.job_id, meta.name, "scheduled" if later else "queued",
                               created=True, steps=meta.step_ids)
        view = await read_view(self.streaq, self.keys, plan.job_id, meta)
        return EnqueuedJob(plan.job_id, meta.name, view.status, created=False,
                           steps=meta.step_ids)

    # --- read --------------------------------------------------------------------------

    async def _owned(self, job_id: str, owner: str) -> tuple[JobMeta, JobView | None]:
        """The job's metadata and, once it finished and was read, its remembered view;
        NotFound when it is unknown or someone else's."""
        raw, done = await self._conn.call(
            lambda: self.redis.mget([self.keys.job(job_id), self.keys.outcome(job_id)]))
        meta = JobMeta.from_json(str(raw)) if raw else None
        if meta is None or meta.owner != owner:
            raise NotFound(f"no job {job_id!r}")
        return meta, (outcomes.decode(str(done)) if done else None)

    async def owned_meta(self, job_id: str, owner: str) -> dict[str, Any]:
        """The job's metadata, or NotFound when it is unknown or someone else's."""
        meta, _ = await self._owned(job_id, owner)
        return meta.as_dict()

    async def view(self, job_id: str, owner: str) -> JobView:
        """The caller's view of one of their jobs, with their request (input, replay_of)."""
        meta, remembered = await self._owned(job_id, owner)
        if remembered is None:
            view = await self._conn.call(
                lambda: read_view(self.streaq, self.keys, job_id, meta))
            remembered = await self._remember(meta, view)
        return replace(remembered, input=meta.data, replay_of=meta.replay_of or None)

    async def _remember(self, meta: JobMeta, view: JobView) -> JobView:
        if view.finished and view.error != ENQUEUE_INCOMPLETE:  # (that one a replay repairs)
            spec = CATALOGUE.get(meta.name)
            ttl = (spec and spec.result_ttl_seconds) or self.settings.result_retention_seconds
            await self._conn.call(lambda: outcomes.remember(self.redis, self.keys, view, ttl))
        return view

    async def wait(self, job_id: str, owner: str, timeout: float) -> JobView:  # noqa: ASYNC109
        """Long-poll: return once the job has finished or ``timeout`` seconds passed."""
        view = await self.view(job_id, owner)
        if view.finished or timeout <= 0 or view.status == "expired":
            return view
        wait = timedelta(seconds=timeout)

        async def until_done() -> TaskResult[Any] | None:
            # Inside call(), whose TimeoutError means "Redis stopped answering": the poll's
            # own deadline must not read as that. An unreadable result is the view's to say.
            with suppress(TimeoutError, StreaqError):
                return await self.streaq.result_by_id(job_id, timeout=wait)
            return None

        result = await self._conn.call(until_done)
        if result is None:
            return await self.view(job_id, owner)
        meta, _ = await self._owned(job_id, owner)
        finished = await self._conn.call(lambda: finished_view(
            self.streaq, self.keys, base_view(job_id, meta), meta, result))
        return await self._remember(meta, finished)

    async def progress(self, job_id: str) -> Progress | None:
        """The job's last reported progress (read after an ownership check)."""
        return await self._conn.call(lambda: read_progress(self.redis, self.keys, job_id))

    async def wait_for_progress(self, job_id: str, owner: str,
                                timeout: float) -> JobView:  # noqa: ASYNC109
        """Long-poll: return once the job reported new progress, finished, or ``timeout``
        seconds passed. Polls the job's small progress key (and Streaq's status)."""
        view = await self.view(job_id, owner)
        if view.finished or timeout <= 0 or view.status == "expired":
            return view
        key = self.keys.progress(job_id)
        seen = await self._conn.call(lambda: self.redis.get(key))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(PROGRESS_POLL_SECONDS, left))
            if await self._conn.call(lambda: self.redis.get(key)) != seen:
                break
            status = await self._conn.call(lambda: self.streaq.status_by_id(job_id))
            if status in (TaskStatus.DONE, TaskStatus.NOT_FOUND):
                break
        return await self.view(job_id, owner)

    # --- list --------------------------------------------------------------------------

    async def list_jobs(self, owner: str, where: JobFilter, limit: int = 20,
                        cursor: str | None = None) -> JobPage:
        """The owner's jobs matching ``where``, newest first, after ``cursor`` (the ``next``
        of the previous page; :class:`~shared.queue.listing.BadCursor` when it is not one).
        A page holds at most ``limit`` jobs, fewer when the index ran out or
        :data:`LIST_MAX_EXAMINED` entries were read; ``next`` is None at the end."""
        after = Cursor.decode(cursor) if cursor else None
        return await self._conn.call(lambda: self._list(owner, where, limit, after))

    async def _list(self, owner: str, where: JobFilter, limit: int,
                    after: Cursor | None) -> JobPage:
        scan = IndexScan(self.redis, self.keys, owner, where, after)
        items: list[JobView] = []
        examined = 0
        async for batch in scan.batches():
            while batch:
                want = limit - len(items)
                if where.state is not None:
                    want = max(want, LIST_MIN_SLICE)
                chunk, batch = batch[:want], batch[want:]
                views = await self._views_of(owner, where, [job_id for job_id, _ in chunk])
                for i, ((job_id, score), view) in enumerate(zip(chunk, views, strict=True)):
                    scan.consumed(job_id, score)
                    examined += 1
                    if view is not None and where.state in (None, view.status):
                        items.append(view)
                    if len(items) >= limit or examined >= LIST_MAX_EXAMINED:
                        more = await scan.more([*chunk[i + 1:], *batch])
                        position = scan.position
                        return JobPage(items, position.encode() if more and position else None)
        return JobPage(items, None)

    async def _views_of(self, owner: str, where: JobFilter,
                        job_ids: list[str]) -> list[JobView | None]:
        """The views of ``job_ids`` (None: gone, not the owner's, or another name): their
        metadata and remembered outcomes in one round trip, the rest built concurrently."""
        if not job_ids:
            return []
        keys = self.keys
        raws = await self.redis.mget([*map(keys.job, job_ids), *map(keys.outcome, job_ids)])
        metas, outcomes_raw = raws[:len(job_ids)], raws[len(job_ids):]
        gate = asyncio.Semaphore(LIST_CONCURRENCY)
        gone: list[str] = []

        async def one(job_id: str, raw_meta: Any, raw_outcome: Any) -> JobView | None:
            if not raw_meta:
                gone.append(job_id)
                return None
            meta = JobMeta.from_json(str(raw_meta))
            if meta.owner != owner or (where.name is not None and meta.name != where.name):
                return None
            if raw_outcome:
                return outcomes.decode(str(raw_outcome))
            async with gate:
                view = await read_view(self.streaq, keys, job_id, meta)
                return await self._remember(meta, view)

        views = await asyncio.gather(*map(one, job_ids, metas, outcomes_raw))
        if gone:  # expired metadata: the index entry has nothing left to show
            await self.redis.zrem(keys.owner_jobs(owner), gone)
        return list(views)

    # --- abort / dead letters ------------------------------------------------------------

    async def abort(self, job_id: str, owner: str, wait_seconds: float = 3.0) -> JobView:
        """Abort a queued, scheduled or running job. Conflict when it already finished."""
        view = await self.view(job_id, owner)
        if view.finished or view.status == "expired":
            raise Conflict(f"job {job_id} already finished ({view.status})")
        wait = timedelta(seconds=wait_seconds)
        # Streaq drops an aborted *scheduled* task without storing a result, so its status
        # would read "not found"; this marker lets the view say "aborted" instead. Set first,
        # so no read in between sees "expired"; it is only consulted for a missing task.
        marker = self.keys.aborted(job_id)
        retention = self.settings.result_retention_seconds
        await self._conn.call(lambda: self.redis.set(marker, str(now_ms()), ex=retention))
        await self._conn.call(lambda: self.streaq.abort_by_id(job_id, timeout=wait))
        # An aborted job no longer counts among the owner's unfinished jobs.
        await self._conn.call(lambda: self.redis.zrem(self.keys.unfinished(owner), [job_id]))
        return await self.view(job_id, owner)

    async def dead_letters(self, owner: str, limit: int = 100) -> list[DeadLetter]:
        """The owner's dead letters, newest first."""
        return await self._conn.call(lambda: list_dead_letters(
            self.redis, self.keys, owner, self.settings.dead_letter_retention_seconds, limit))

    async def retry_dead_letter(
        self, job_id: str, owner: str, correlation_id: str | None = None
    ) -> EnqueuedJob:
        """Enqueue a dead letter again as a new job, and forget the dead letter.

        The new job's id derives from the dead letter, so concurrent retries of one dead
        letter enqueue one job (each gets it back), not one each.
        """
        [letter] = await self._conn.call(
            lambda: load_dead_letters(self.redis, self.keys, [job_id]))
        if letter is None or letter.owner != owner:
            raise NotFound(f"no dead letter {job_id!r}")
        retry_id = deterministic_job_id("retry", owner, job_id, letter.failed_at.isoformat())
        pipeline = await self._pipeline_of(job_id, owner, letter.name)
        if pipeline is not None:  # a step: the rest of its pipeline runs after it again
            parent, step = pipeline
            job = await self.enqueue(
                parent.name, letter.payload, owner=owner, correlation_id=correlation_id,
                job_id=retry_id, profile=parent.profile, from_step=step)
        else:
            job = await self.enqueue(
                letter.name, letter.payload, owner=owner, correlation_id=correlation_id,
                job_id=retry_id,
            )
        await self._conn.call(lambda: forget_dead_letter(self.redis, self.keys, job_id, owner))
        return job

    async def step_views(self, view: JobView, owner: str) -> list[tuple[str, JobView]]:
        """A pipeline's steps, in order, as (step name, view); the last is the job itself."""
        spec = CATALOGUE.get(view.name)
        if spec is None or not view.steps:
            return []
        earlier = [await self.view(step_id, owner) for step_id in view.steps[:-1]]
        return [*((v.name, v) for v in earlier), (spec.steps[-1], view)]

    async def _pipeline_of(self, step_id: str, owner: str,
                           step_name: str) -> tuple[JobMeta, int] | None:
        """The pipeline ``step_id`` is a step of, and that step's index in it (None: not a
        step, or its pipeline's metadata is gone)."""
        raw = await self._conn.call(lambda: self.redis.get(self.keys.job(step_id)))
        step = JobMeta.from_json(str(raw)) if raw else None
        parent_id = step.pipeline if step is not None else ""
        if not parent_id:
            return None
        raw_parent = await self._conn.call(lambda: self.redis.get(self.keys.job(parent_id)))
        parent = JobMeta.from_json(str(raw_parent)) if raw_parent else None
        spec = CATALOGUE.get(parent.name) if parent is not None else None
        if parent is None or parent.owner != owner or spec is None or step_name not in spec.steps:
            return None
        return parent, spec.steps.index(step_name)

    # --- webhooks (shared/webhooks.py) ------------------------------------------------------

    async def add_webhook(self, hook: Any) -> bool:
        from shared import webhooks  # imported here: shared.webhooks is not the queue's

        added: bool = await self._conn.call(
            lambda: webhooks.register(self.redis, self.keys.prefix, hook))
        return added

    async def webhooks(self, owner: str) -> list[Any]:
        from shared import webhooks

        found: list[Any] = await self._conn.call(
            lambda: webhooks.all_of(self.redis, self.keys.prefix, owner))
        return found

    async def remove_webhook(self, owner: str, hook_id: str) -> Any:
        """The removed webhook, or None when the owner has none with that id."""
        from shared import webhooks

        hook = await self._conn.call(
            lambda: webhooks.one(self.redis, self.keys.prefix, owner, hook_id))
        if hook is not None:
            await self._conn.call(
                lambda: webhooks.remove(self.redis, self.keys.prefix, owner, hook_id))
        return hook

    # --- per-owner quotas (shared/limits.py) ---------------------------------------------

    def _limits(self) -> Any:
        from shared.limits import Limits  # imported here: shared.limits uses this package

        return Limits(self.redis, self.keys, self.settings)

    async def admit(self, owner: str) -> int:
        """Spend one of ``owner``'s enqueues and check their unfinished jobs (RateLimited);
        how many unfinished jobs they have (see ``shared.limits.fair_priority``)."""
        unfinished: int = await self._conn.call(lambda: self._limits().admit(owner))
        return unfinished

    async def lease_long_poll(self, owner: str, seconds: float) -> str | None:
        """One of ``owner``'s concurrent long-polls for ``seconds`` (RateLimited)."""
        lease: str | None = await self._conn.call(
            lambda: self._limits().lease_long_poll(owner, seconds))
        return lease

    async def release_long_poll(self, owner: str, lease: str | None) -> None:
        await self._conn.call(lambda: self._limits().release_long_poll(owner, lease))

    # --- metrics -----------------------------------------------------------------------

    async def queued_by_priority(self, limit: int = 1000) -> dict[str, int]:
        """How many jobs wait in each priority (counted up to ``limit`` + 1 each)."""
        found = await self._conn.call(lambda: queued_by_priority(self.streaq, limit + 1))
        return {priority: len(tasks) for priority, tasks in found.items()}

    async def stats(self) -> QueueStats:
        """Queue depth, running jobs, live workers and the oldest waiting job's age."""
        return await self._conn.call(lambda: read_stats(self.streaq, self.keys, now_ms()))
