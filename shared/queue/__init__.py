"""The queue client: enqueue catalogue jobs by name, read their status, abort, retry.

It wraps a client-only Streaq ``Worker`` (same queue name, serializer, signing secret and
priorities as the workers, built by :func:`make_streaq`) so that ``functions/`` can enqueue
without importing task code. Beside Streaq's own keys it keeps, per job, a small metadata
hash (owner, name, payload, correlation id) that makes ownership checks, idempotency keys,
deterministic ids and dead letters work without MongoDB.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from coredis.commands.script import Script
from streaq import Worker
from streaq.task import TaskStatus
from streaq.types import StreaqCancelled

from shared.config import Settings
from shared.errors import Conflict, NotFound, QueueUnavailable
from shared.jobs import CATALOGUE, JobSpec, job_context
from shared.queue import wire

JobState = Literal[
    "queued", "scheduled", "running", "done", "failed", "aborted", "expired", "unknown"
]
FINISHED: frozenset[str] = frozenset({"done", "failed", "aborted"})
_UNFINISHED: dict[TaskStatus, JobState] = {
    TaskStatus.QUEUED: "queued",
    TaskStatus.SCHEDULED: "scheduled",
    TaskStatus.RUNNING: "running",
}
T = TypeVar("T")


# Enqueue one job in one round trip: write its metadata and publish its task, unless the
# id is taken. Returns 1 when it enqueued; the stored metadata when the id already has some
# (nothing is written: the caller decides replay or conflict); 0 when Streaq already holds
# a task of that id without our metadata (nothing is written either). The publish half is
# Streaq 7.2's `publish_task` (streaq/lua/streaq.lua; tests/test_queue_enqueue.py compares
# the two) for a task without dependencies or expiry: a script cannot FCALL Streaq's function,
# and MULTI/EXEC cannot make the publish depend on the metadata's SET NX.
#   KEYS: metadata, Streaq task, Streaq stream (this priority), Streaq delayed queue (same)
#   ARGV: metadata JSON, metadata TTL s, task body, task id, score (0 = now), enqueue ms
_ENQUEUE_LUA = """
local existing = redis.call('get', KEYS[1])
if existing then return existing end
if not redis.call('set', KEYS[2], ARGV[3], 'nx') then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'ex', ARGV[2])
if ARGV[5] ~= '0' then
  redis.call('zadd', KEYS[4], ARGV[5], ARGV[4])
else
  redis.call('xadd', KEYS[3], '*', 'task_id', ARGV[4], 'enqueue_time', ARGV[6])
end
return 1
"""
_TASK_TAKEN = 0
_ENQUEUE_SCRIPT: Script[str] = Script(script=_ENQUEUE_LUA)


def make_streaq(settings: Settings, **worker_kwargs: Any) -> Worker[Any]:
    """A Streaq ``Worker`` wired exactly as every Offload process must agree on.

    Clients (Lambdas, the CLI) and workers differ only in ``worker_kwargs``
    (concurrency, lifespan, grace period); queue name, priorities, serializer and signing
    secret come from settings so a job enqueued by one is readable by the other.
    """
    redis_kwargs: dict[str, Any] = {"connect_timeout": settings.redis_socket_timeout_seconds}
    redis_kwargs.update(worker_kwargs.pop("redis_kwargs", {}))
    return Worker(
        redis_url=settings.redis_url,
        queue_name=settings.queue_name,
        priorities=list(settings.priorities),
        signing_secret=settings.signing_secret.get_secret_value(),
        serializer=wire.dumps,
        deserializer=wire.loads,
        idle_timeout=settings.worker_idle_timeout_seconds,
        redis_kwargs=redis_kwargs,
        **worker_kwargs,
    )


def deterministic_job_id(*parts: str) -> str:
    """A job id derived from ``parts``: the same parts always name the same job."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4).hex


def now_ms() -> int:
    return round(time.time() * 1000)


class Keys:
    """Offload's own Redis keys, beside Streaq's ``streaq:{queue}:*``."""

    def __init__(self, queue_name: str) -> None:
        self.prefix = f"offload:{queue_name}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def dead_index(self, owner: str) -> str:
        return f"{self.prefix}dead:{owner}"

    def dead_letter(self, job_id: str) -> str:
        return f"{self.prefix}deadletter:{job_id}"


@dataclass(frozen=True)
class EnqueuedJob:
    """What an enqueue returns: the id, and whether this call created the job."""

    id: str
    name: str
    status: JobState
    created: bool
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobView:
    """Everything a caller may know about one of their jobs."""

    id: str
    name: str
    status: JobState
    tries: int
    enqueued_at: datetime | None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: dict[str, str] | None = None
    steps: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class DeadLetter:
    """A job that failed for good: enough to show it and to enqueue it again."""

    id: str
    name: str
    owner: str
    payload: dict[str, Any]
    error_type: str
    error: str
    tries: int
    failed_at: datetime


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


def _ms_to_dt(value: Any) -> datetime | None:
    if value in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _describe_error(exc: BaseException) -> dict[str, str]:
    failure = wire.JobFailure.from_exception(exc)
    return {"type": failure.type_name, "message": failure.message}


def payload_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class JobQueue:
    """Enqueue and inspect Offload jobs. Enter with ``async with`` (or :meth:`connect`).

    One instance per process; it stays connected across calls. ``functions/`` keeps one per
    Lambda container on a persistent event loop (see :mod:`shared.aio`).
    """

    settings: Settings
    _streaq: Worker[Any] = field(init=False)
    _stack: AsyncExitStack | None = field(init=False, default=None)
    _holder: asyncio.Task[None] | None = field(init=False, default=None)
    _stop: asyncio.Event | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._streaq = make_streaq(
            self.settings,
            handle_signals=False,
            redis_kwargs={"stream_timeout": self.settings.redis_socket_timeout_seconds},
        )
        self.keys = Keys(self.settings.queue_name)

    # --- connection --------------------------------------------------------------------

    async def __aenter__(self) -> JobQueue:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect (idempotent). A holder task keeps Streaq's client context open, so the
        connection pool outlives the call that opened it (warm Lambda invocations)."""
        if self._holder is not None and not self._holder.done():
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stop = asyncio.Event()
        self._holder = asyncio.create_task(self._hold(ready, self._stop))
        try:
            await ready
        except BaseException as exc:
            holder, self._holder = self._holder, None
            if holder is not None:
                with suppress(BaseException):
                    await holder  # collect its (same) exception: no "never retrieved" warning
            raise QueueUnavailable(f"cannot connect to Redis: {exc}") from exc

    async def _hold(self, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        try:
            async with self._streaq:
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                return  # the pool died; the next call reconnects
            raise

    async def aclose(self) -> None:
        if self._holder is None:
            return
        holder, self._holder = self._holder, None
        if self._stop is not None:
            self._stop.set()
        try:
            await asyncio.wait_for(holder, timeout=5)
        except (TimeoutError, Exception):
            holder.cancel()

    async def reset(self) -> None:
        """Drop the connection (after a SnapStart restore, or a Redis failover)."""
        await self.aclose()
        self._streaq = make_streaq(
            self.settings,
            handle_signals=False,
            redis_kwargs={"stream_timeout": self.settings.redis_socket_timeout_seconds},
        )

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` against Redis; connection faults become :class:`QueueUnavailable`."""
        from coredis.exceptions import ConnectionError as RedisConnectionError

        await self.connect()
        try:
            return await fn()
        except (RedisConnectionError, OSError, TimeoutError) as exc:
            await self.reset()
            raise QueueUnavailable(f"Redis is unreachable: {exc}") from exc

    @property
    def streaq(self) -> Worker[Any]:
        return self._streaq

    @property
    def redis(self) -> Any:
        return self._streaq.redis

    async def ping(self) -> bool:
        return bool(await self._call(lambda: self.redis.ping()))

    # --- enqueue -----------------------------------------------------------------------

    async def enqueue(
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
    ) -> EnqueuedJob:
        """Validate ``payload`` against the catalogue and enqueue job ``name`` for ``owner``.

        The same ``job_id`` (or the same ``idempotency_key`` from the same owner) while the
        job is remembered returns the existing job instead of creating a second one; the
        same key with a different payload is a :class:`Conflict`.
        """
        spec = CATALOGUE.get(name)
        if spec is None:
            raise NotFound(f"unknown job {name!r}")
        data = spec.validate(payload).model_dump(mode="json")
        if idempotency_key is not None:
            job_id = deterministic_job_id("idempotency", owner, idempotency_key)
        job_id = job_id or uuid.uuid4().hex
        prio = priority or spec.priority
        if prio not in self.settings.priorities:
            raise ValueError(f"priority must be one of {self.settings.priorities}")
        if delay_seconds and run_at:
            raise ValueError("give delay_seconds or run_at, not both")
        return await self._call(
            lambda: self._enqueue(
                spec, data, owner, job_id, prio, delay_seconds, run_at, correlation_id
            )
        )

    def _meta_ttl(self, spec: JobSpec, delay: float) -> int:
        run_for = spec.timeout_seconds * spec.max_tries + spec.max_tries**2
        keep = max(spec.result_ttl_seconds or self.settings.result_retention_seconds,
                   self.settings.idempotency_ttl_seconds)
        return int(delay) + run_for + keep + 60

    async def _enqueue(
        self,
        spec: JobSpec,
        data: dict[str, Any],
        owner: str,
        job_id: str,
        priority: str,
        delay_seconds: float | None,
        run_at: datetime | None,
        correlation_id: str | None,
    ) -> EnqueuedJob:
        delay = delay_seconds or 0.0
        if run_at is not None:
            delay = max(0.0, (run_at - datetime.now(UTC)).total_seconds())
        step_ids: tuple[str, ...] = ()
        if spec.is_pipeline:
            step_ids = (*(f"{job_id}-{i}" for i in range(len(spec.steps) - 1)), job_id)
        meta = {
            "name": spec.name,
            "owner": owner,
            "created_ms": str(now_ms()),
            "payload": json.dumps(data, sort_keys=True),
            "digest": payload_digest(data),
            "correlation_id": correlation_id or "",
            "steps": ",".join(step_ids) if spec.is_pipeline else "",
        }
        ttl = self._meta_ttl(spec, delay)
        if not spec.is_pipeline:
            return await self._publish(spec, data, owner, job_id, meta, ttl, priority, delay)
        created = await self.redis.set(
            self.keys.job(job_id), json.dumps(meta), condition=_nx(), ex=ttl
        )
        if not created:
            return await self._existing(spec, owner, job_id, meta, await self._meta(job_id))
        try:
            await self._publish_pipeline(spec, data, owner, step_ids, meta, ttl, priority)
        except BaseException:
            await self.redis.delete([self.keys.job(job_id)])
            raise
        return EnqueuedJob(job_id, spec.name, "scheduled", created=True, steps=step_ids)

    async def _publish(self, spec: JobSpec, data: dict[str, Any], owner: str, job_id: str,
                       meta: dict[str, str], ttl: int, priority: str,
                       delay: float) -> EnqueuedJob:
        """Write the job's metadata and publish its task in one round trip, or return the
        job that already has this id (:data:`_ENQUEUE_LUA`: one script, so the metadata
        exists before any worker can see the task, and a taken id publishes nothing)."""
        streaq = self._streaq
        task = streaq.enqueue_unsafe(spec.name, **data,
                                     **job_context(owner, meta["correlation_id"]))
        task.id = job_id
        enqueued_ms = now_ms()
        body = await task.serialize(enqueued_ms)
        score = enqueued_ms + round(delay * 1000) if delay > 0 else 0
        answer: int | str = await _ENQUEUE_SCRIPT(
            keys=[self.keys.job(job_id), streaq.task_key + job_id,
                  streaq.stream_key + priority, streaq.queue_key + priority],
            args=[json.dumps(meta), ttl, body, job_id, score, enqueued_ms],
            client=self.redis,
        )
        if isinstance(answer, str):
            return await self._existing(spec, owner, job_id, meta, json.loads(answer))
        if answer == _TASK_TAKEN:
            raise Conflict("this job id is taken")
        return EnqueuedJob(job_id, spec.name, "scheduled" if delay > 0 else "queued",
                           created=True)

    async def _existing(self, spec: JobSpec, owner: str, job_id: str, meta: dict[str, str],
                        existing: dict[str, str] | None) -> EnqueuedJob:
        """The job an enqueue found under its id: the same one (same owner, job and
        payload: an idempotent replay), or a :class:`Conflict`."""
        if existing is None or existing.get("owner") != owner:
            raise Conflict("this job id is taken")
        if existing.get("digest") != meta["digest"] or existing.get("name") != spec.name:
            raise Conflict(
                "this Idempotency-Key was used with a different job or payload",
                {"job_id": job_id},
            )
        current = (await self.view(job_id, owner)).status
        steps = tuple(s for s in existing.get("steps", "").split(",") if s)
        return EnqueuedJob(job_id, spec.name, current, created=False, steps=steps)

    async def _publish_pipeline(
        self,
        spec: JobSpec,
        data: dict[str, Any],
        owner: str,
        step_ids: tuple[str, ...],
        meta: dict[str, str],
        ttl: int,
        priority: str,
    ) -> None:
        # Each step gets its own metadata (so its status, dead letter and retry belong to
        # the owner) and is chained with Streaq's dependencies: a step is published only
        # when the previous one finished, receiving its result as its input.
        first, *rest = spec.steps
        context = job_context(owner, meta["correlation_id"])
        head = self._streaq.enqueue_unsafe(first, **data, **context)
        head.id = step_ids[0]
        head.priority = priority
        tail = head
        for step_name, step_id in zip(rest, step_ids[1:], strict=True):
            nxt = self._streaq.enqueue_unsafe(step_name)
            # enqueue_unsafe's stand-in for the unregistered step (its ``parent``); the
            # previous step's result is its positional argument, the job's context its one
            # keyword argument.
            tail = tail.then(nxt.parent, **context)  # type: ignore[call-overload]
            tail.id = step_id
            tail.priority = priority
        async with self.redis.pipeline(transaction=False) as pipe:
            for step_name, step_id in zip(spec.steps, step_ids, strict=True):
                if step_id == step_ids[-1]:
                    continue
                step_meta = dict(meta, name=step_name, steps="", pipeline=step_ids[-1])
                pipe.set(self.keys.job(step_id), json.dumps(step_meta), ex=ttl)
        await tail

    # --- read --------------------------------------------------------------------------

    async def _meta(self, job_id: str) -> dict[str, str] | None:
        raw = await self.redis.get(self.keys.job(job_id))
        return json.loads(raw) if raw else None

    async def owned_meta(self, job_id: str, owner: str) -> dict[str, str]:
        """The job's metadata, or NotFound when it is unknown or someone else's."""
        meta = await self._call(lambda: self._meta(job_id))
        if meta is None or meta.get("owner") != owner:
            raise NotFound(f"no job {job_id!r}")
        return meta

    async def view(self, job_id: str, owner: str) -> JobView:
        """The caller's view of one of their jobs."""
        meta = await self.owned_meta(job_id, owner)
        return await self._call(lambda: self._view(job_id, meta))

    async def _view(self, job_id: str, meta: dict[str, str]) -> JobView:
        streaq = self._streaq
        status = await streaq.status_by_id(job_id)
        base = JobView(
            id=job_id,
            name=meta["name"],
            status="expired",
            tries=0,
            enqueued_at=_ms_to_dt(meta.get("created_ms")),
            steps=tuple(s for s in meta.get("steps", "").split(",") if s),
        )
        if status == TaskStatus.DONE:
            raw = await streaq.redis.get(streaq.results_key + job_id)
            if raw is None:  # expired between the two reads
                return base
            data = await streaq.deserialize(raw)
            finished = replace(
                base,
                tries=int(data.get("t") or 0),
                started_at=_ms_to_dt(data.get("st")),
                finished_at=_ms_to_dt(data.get("ft")),
            )
            if data["s"]:
                return replace(finished, status="done", result=data["r"])
            exc = data["r"]
            state: JobState = "aborted" if isinstance(exc, StreaqCancelled) else "failed"
            return replace(finished, status=state, error=_describe_error(exc))
        if status == TaskStatus.NOT_FOUND:
            aborted_ms = await self.redis.get(self.keys.job(job_id) + ":aborted")
            if aborted_ms:
                return replace(
                    base,
                    status="aborted",
                    finished_at=_ms_to_dt(aborted_ms),
                    error={"type": "StreaqCancelled", "message": "aborted before it ran"},
                )
            return base
        info = await streaq.info_by_id(job_id)
        progress = await self.redis.hgetall(self.keys.job(job_id) + ":run")
        return replace(
            base,
            status=_UNFINISHED[status],
            tries=int(progress.get("tries") or (info.tries if info else 0)),
            scheduled_for=info.scheduled if info else None,
            started_at=_ms_to_dt(progress.get("started_ms")),
        )

    async def wait(self, job_id: str, owner: str, timeout: float) -> JobView:  # noqa: ASYNC109
        """Long-poll: return once the job has finished or ``timeout`` seconds passed."""
        view = await self.view(job_id, owner)
        if view.finished or timeout <= 0 or view.status == "expired":
            return view
        wait = timedelta(seconds=timeout)

        async def until_done() -> None:
            # Inside _call, whose TimeoutError means "Redis stopped answering": the poll's
            # own deadline must not read as that.
            with suppress(TimeoutError):
                await self._streaq.result_by_id(job_id, timeout=wait)

        await self._call(until_done)
        return await self.view(job_id, owner)

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
        marker = self.keys.job(job_id) + ":aborted"
        retention = self.settings.result_retention_seconds
        await self._call(lambda: self.redis.set(marker, str(now_ms()), ex=retention))
        await self._call(lambda: self._streaq.abort_by_id(job_id, timeout=wait))
        return await self.view(job_id, owner)

    async def dead_letters(self, owner: str, limit: int = 100) -> list[DeadLetter]:
        """The owner's dead letters, newest first."""
        return await self._call(lambda: self._dead_letters(owner, limit))

    async def _dead_letters(self, owner: str, limit: int) -> list[DeadLetter]:
        index = self.keys.dead_index(owner)
        cutoff = now_ms() - self.settings.dead_letter_retention_seconds * 1000
        await self.redis.zremrangebyscore(index, 0, cutoff)
        ids = await self.redis.zrange(index, 0, limit - 1, rev=True)
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.dead_letter(i) for i in ids])
        return [_dead_letter_from_json(r) for r in raws if r]

    async def retry_dead_letter(
        self, job_id: str, owner: str, correlation_id: str | None = None
    ) -> EnqueuedJob:
        """Enqueue a dead letter again as a new job, and forget the dead letter."""
        raw = await self._call(lambda: self.redis.get(self.keys.dead_letter(job_id)))
        letter = _dead_letter_from_json(raw) if raw else None
        if letter is None or letter.owner != owner:
            raise NotFound(f"no dead letter {job_id!r}")
        job = await self.enqueue(
            letter.name, letter.payload, owner=owner, correlation_id=correlation_id
        )

        async def forget() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete([self.keys.dead_letter(job_id)])
                pipe.zrem(self.keys.dead_index(owner), [job_id])

        await self._call(forget)
        return job

    # --- metrics -----------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Queue depth, running jobs, live workers and the oldest queued job's age."""
        return await self._call(self._stats)

    async def _stats(self) -> QueueStats:
        # A stream entry lives from enqueue until its task finishes. Every entry whose task
        # has not started is backlog: never delivered, or prefetched by a worker (up to
        # 2 x concurrency each) and waiting for a free slot. Counting only undelivered
        # entries would hide the prefetch and keep the service from scaling out.
        streaq = self._streaq
        redis = self.redis
        now = now_ms()
        running_ids = set(await redis.smembers(streaq.prefix + ":index:running"))
        length = due = scheduled = 0
        oldest = now
        for prio in streaq.priorities:
            stream = streaq.stream_key + prio
            length += await redis.xlen(stream)
            # Entries are in enqueue order and at most len(running_ids) of them are running,
            # so the first non-running one among that many + 1 is the oldest waiting one.
            for entry in await redis.xrange(stream, "-", "+", count=len(running_ids) + 1):
                values = entry.field_values
                if values.get("task_id") not in running_ids:
                    oldest = min(oldest, int(values.get("enqueue_time") or now))
                    break
            delayed = streaq.queue_key + prio
            scheduled += await redis.zcard(delayed)
            due_now = await redis.zrange(delayed, 0, now, sortby=_byscore(), withscores=True)
            due += len(due_now)
            if due_now:
                oldest = min(oldest, int(min(score for _, score in due_now)))
        workers = 0
        async for _ in redis.scan_iter(match=f"{streaq.prefix}:health:*", count=500):
            workers += 1
        return QueueStats(
            queued=max(0, length - len(running_ids)),
            due_scheduled=due,
            scheduled=scheduled - due,
            running=len(running_ids),
            workers=workers,
            oldest_age_seconds=max(0.0, (now - oldest) / 1000),
        )


async def record_dead_letter(redis: Any, keys: Keys, ttl: int, letter: DeadLetter) -> None:
    """Remember a job that failed for good, for ``ttl`` seconds (Redis, not MongoDB)."""
    body = json.dumps(
        {
            "id": letter.id,
            "name": letter.name,
            "owner": letter.owner,
            "payload": letter.payload,
            "error_type": letter.error_type,
            "error": letter.error,
            "tries": letter.tries,
            "failed_ms": int(letter.failed_at.timestamp() * 1000),
        },
        default=str,
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.dead_letter(letter.id), body, ex=ttl)
        pipe.zadd(keys.dead_index(letter.owner), {letter.id: now_ms()})
        pipe.expire(keys.dead_index(letter.owner), ttl)


def _dead_letter_from_json(raw: str) -> DeadLetter:
    data = json.loads(raw)
    return DeadLetter(
        id=data["id"],
        name=data["name"],
        owner=data["owner"],
        payload=data["payload"],
        error_type=data["error_type"],
        error=data["error"],
        tries=int(data["tries"]),
        failed_at=datetime.fromtimestamp(data["failed_ms"] / 1000, tz=UTC),
    )


def _nx() -> Any:
    from coredis import PureToken

    return PureToken.NX


def _byscore() -> Any:
    from coredis import PureToken

    return PureToken.BYSCORE
