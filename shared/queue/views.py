"""Job views: what a caller may know about a job, built from Streaq's public reads
(``status_by_id``, ``result_by_id``, ``info_by_id``) and Offload's own keys."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from streaq import Worker
from streaq.task import TaskResult, TaskStatus
from streaq.types import StreaqCancelled, StreaqError

from shared.jobs import CATALOGUE
from shared.queue import wire
from shared.queue.dead_letters import DeadLetter, load_dead_letters
from shared.queue.keys import Keys
from shared.queue.meta import META_VERSION, JobMeta

JobState = Literal["queued", "scheduled", "running", "done", "failed", "aborted", "expired"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "aborted"})
_UNFINISHED: dict[TaskStatus, JobState] = {
    TaskStatus.QUEUED: "queued",
    TaskStatus.SCHEDULED: "scheduled",
    TaskStatus.RUNNING: "running",
}
# How long a view waits for a result Streaq just reported done (it is there unless it
# expired in between, and then the read would wait for a result that never comes).
RESULT_READ = timedelta(seconds=2)

UNREADABLE_RESULT = {
    "type": "UnreadableResult",
    "message": "the job's outcome was stored in a format this version cannot read (written "
               "before the JSON wire format); see 'Upgrading to the JSON wire format' in "
               "docs/DEPLOY.md",
}
ENQUEUE_INCOMPLETE = {
    "type": "EnqueueIncomplete",
    "message": "the enqueue stopped before the job was published; send the same request "
               "(the same Idempotency-Key) again to finish it",
}


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
    # The caller's own request, from the metadata (never cached with the outcome).
    input: dict[str, Any] | None = None
    replay_of: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def ms_to_dt(value: Any) -> datetime | None:
    if value in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def describe_error(exc: BaseException) -> dict[str, str]:
    failure = wire.JobFailure.from_exception(exc)
    return {"type": failure.type_name, "message": failure.message}


def own_task_name(meta: JobMeta) -> str:
    """The task name Streaq stores with this job's result (a pipeline's last step)."""
    spec = CATALOGUE.get(meta.name)
    return spec.steps[-1] if spec is not None and spec.is_pipeline else meta.name


def outcome(view: JobView, result: TaskResult[Any]) -> JobView:
    """The view of a result this job's own task stored."""
    if result.success:
        return replace(view, status="done", result=result.result)
    exc = result.exception
    state: JobState = "aborted" if isinstance(exc, StreaqCancelled) else "failed"
    return replace(view, status=state, error=describe_error(exc))


def stand_in_outcome(view: JobView, result: TaskResult[Any], *,
                     dead_letter: DeadLetter | None,
                     earlier_failure: dict[str, str] | None, legacy: bool = False) -> JobView:
    """The view of a failure Streaq stored under another task name than the job's own.

    ``tries == 0``: a pipeline step before this one failed, and Streaq failed the rest
    without running them. Otherwise a second delivery of the job started after the first
    had finished and stored its failure over the real outcome: the job failed if the retry
    policy recorded a dead letter for it, and succeeded (result no longer known) if not.
    A ``legacy`` job (enqueued by a version before the JSON wire format) is the exception:
    a worker that could not read its task stores the same record, so it reads as
    unreadable rather than done.
    """
    if result.tries == 0:
        error = earlier_failure or {"type": "DependencyFailed",
                                    "message": "an earlier step failed"}
        return replace(view, status="failed", tries=0, error=error)
    if dead_letter is not None:
        return replace(view, status="failed", tries=dead_letter.tries,
                       error={"type": dead_letter.error_type, "message": dead_letter.error})
    if legacy:
        return replace(view, status="failed", error=UNREADABLE_RESULT)
    return replace(view, status="done", result=None)


def base_view(job_id: str, meta: JobMeta) -> JobView:
    return JobView(id=job_id, name=meta.name, status="expired", tries=0,
                   enqueued_at=ms_to_dt(meta.created_ms), steps=meta.step_ids,
                   input=meta.data, replay_of=meta.replay_of or None)


async def read_view(streaq: Worker[Any], keys: Keys, job_id: str, meta: JobMeta) -> JobView:
    """The view of ``job_id``, whose metadata is ``meta``."""
    base = base_view(job_id, meta)
    status = await streaq.status_by_id(job_id)
    if status == TaskStatus.DONE:
        return await _finished(streaq, keys, base, meta)
    if status == TaskStatus.NOT_FOUND:
        return await _missing(streaq, keys, base, meta)
    return await _unfinished(streaq, keys, base, status)


async def _finished(streaq: Worker[Any], keys: Keys, base: JobView, meta: JobMeta) -> JobView:
    try:
        result = await streaq.result_by_id(base.id, timeout=RESULT_READ)
    except TimeoutError:
        if await streaq.status_by_id(base.id) == TaskStatus.NOT_FOUND:
            return base  # it expired between the two reads
        raise  # Redis was too slow: unavailable, not "expired"
    except StreaqError:  # the deserializer refused it (signature or format)
        return replace(base, status="failed", error=UNREADABLE_RESULT)
    return await finished_view(streaq, keys, base, meta, result)


async def finished_view(streaq: Worker[Any], keys: Keys, base: JobView, meta: JobMeta,
                        result: TaskResult[Any]) -> JobView:
    """The view of a job whose stored result is ``result``."""
    view = replace(base, tries=result.tries, started_at=ms_to_dt(result.start_time),
                   finished_at=ms_to_dt(result.finish_time))
    if result.fn_name == own_task_name(meta):
        return outcome(view, result)
    if result.tries == 0:
        return stand_in_outcome(view, result, dead_letter=None,
                                earlier_failure=await _earlier_failure(streaq, keys, meta))
    [letter] = await load_dead_letters(streaq.redis, keys, [base.id])
    return stand_in_outcome(view, result, dead_letter=letter, earlier_failure=None,
                            legacy=meta.version < META_VERSION)


async def _earlier_failure(streaq: Worker[Any], keys: Keys,
                           meta: JobMeta) -> dict[str, str] | None:
    """Which earlier step of the pipeline failed, from the dead letter the retry policy
    recorded for it (None when no step left one: aborted, or its letter expired)."""
    spec = CATALOGUE.get(meta.name)
    earlier = list(meta.step_ids[:-1])
    if spec is None or not earlier:
        return None
    letters = await load_dead_letters(streaq.redis, keys, earlier)
    for step_name, letter in zip(spec.steps, letters, strict=False):
        if letter is not None:
            return {"type": "DependencyFailed",
                    "message": f"step {step_name} failed: {letter.error_type}: {letter.error}"}
    return None


async def _missing(streaq: Worker[Any], keys: Keys, base: JobView, meta: JobMeta) -> JobView:
    """Streaq does not know the task: aborted before it ran, not yet (or never)
    published, or finished so long ago that its result expired."""
    async with streaq.redis.pipeline(transaction=False) as pipe:
        aborted = pipe.get(keys.aborted(base.id))
        publishing = pipe.exists([keys.publish_lock(base.id)])
    aborted_ms = await aborted
    if aborted_ms:
        return replace(base, status="aborted", finished_at=ms_to_dt(aborted_ms),
                       error={"type": "StreaqCancelled", "message": "aborted before it ran"})
    if meta.published:
        return base
    if await publishing:
        return replace(base, status="queued")
    return replace(base, status="failed", error=ENQUEUE_INCOMPLETE)


async def _unfinished(streaq: Worker[Any], keys: Keys, base: JobView,
                      status: TaskStatus) -> JobView:
    try:
        info = await streaq.info_by_id(base.id)
    except StreaqError:  # a task body this version cannot read: the worker will fail it
        info = None
    progress = await streaq.redis.hgetall(keys.run(base.id))
    return replace(
        base,
        status=_UNFINISHED[status],
        tries=int(progress.get("tries") or (info.tries if info else 0)),
        scheduled_for=info.scheduled if info else None,
        started_at=ms_to_dt(progress.get("started_ms")),
    )
