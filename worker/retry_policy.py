"""The retry policy every job shares, as one Streaq middleware (:class:`RetryPolicy`).

- ``PermanentJobError`` and invalid input fail at once, with their reason.
- Anything else (throttling, network, timeouts, bugs) is retried with exponential backoff
  and jitter until the job's ``max_tries``; then it fails for good, stored as a
  :class:`~shared.queue.wire.JobFailure` that says whether it was retryable and after how
  many tries.
- A job that fails for good becomes a dead letter in Redis (name, payload, owner, error,
  tries, time), listable and re-enqueueable through the API without MongoDB.
- Each run logs its try and the request's correlation id, both read from the message
  itself (no Redis read per run); a run that lasts also records its try count and start
  time in Redis for the status API (:mod:`worker.run_records`).
- :func:`current_job` tells the running job who it acts for (owner, correlation id, the
  caller's e-mail and name claims, roles), from the same message context; each run gets a
  progress reporter (:func:`worker.progress.progress`).
- With :class:`~worker.job_metrics.JobMetrics` given, each run counts towards the job's
  ``QueueWait`` (first try), ``JobDuration``, ``JobsFailed`` and ``DeadLetters`` metrics.
- Each job runs in its own cancel scope in the worker's :class:`RunningJobs`, and a second
  copy of a job already running in this worker waits for the first's outcome. A job cut
  short through its scope (the Redis watchdog, when Redis fails) is retried.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from pydantic import ValidationError
from streaq import StreaqRetry, Worker
from streaq.types import TaskContext

from shared import webhooks
from shared.errors import PermanentJobError
from shared.job_events import Emitter, detail
from shared.jobs import CATALOGUE, CONTEXT_KWARG, READY_KWARG, RESERVED_OWNERS
from shared.limits import job_finished, limited
from shared.queue import DeadLetter, Keys, record_dead_letter
from shared.queue.keys import now_ms
from shared.queue.progress import Progress
from shared.queue.wire import JobFailure
from shared.webhooks import Webhook
from worker.fair_share import FairShare
from worker.job_metrics import JobMetrics
from worker.progress import REPORTER, ProgressReporter
from worker.run_records import RunRecorder
from worker.running_jobs import CopyCancelled, JobRun, RunningJobs

log = logging.getLogger("offload.worker")

WEBHOOK_JOB = "deliver_webhook"
# How long a worker trusts its copy of an owner's webhooks (a new one is used within this).
WEBHOOK_CACHE_SECONDS = 5.0
WEBHOOK_CACHE_OWNERS = 10_000
# A task without a timeout holds its fair-share slot this long if its worker dies.
DEFAULT_LEASE_SECONDS = 900
STREAQ_GRACE_SECONDS = 60
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0

AsyncFn = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class Attempt:
    """Which try of its job the running code is on."""

    tries: int
    max_tries: int

    @property
    def last(self) -> bool:
        return self.tries >= self.max_tries


#: The running job's try, set by the policy for the duration of each run.
ATTEMPT: ContextVar[Attempt] = ContextVar("offload_attempt")


def current_attempt() -> Attempt:
    """The running job's try; jobs use it to record a final failure on their last try.
    Outside the policy (a direct call) there is no retry, so the one try is the last."""
    return ATTEMPT.get(Attempt(tries=1, max_tries=1))


@dataclass(frozen=True)
class JobContext:
    """Who the running job acts for: its owner (the token's ``sub``; ``system`` for internal
    jobs), the request's correlation id, the caller's e-mail/name claims, and roles."""

    owner: str
    correlation_id: str = ""
    email: str = ""
    name: str = ""
    roles: tuple[str, ...] = ()

    @classmethod
    def from_message(cls, context: dict[str, Any]) -> JobContext:
        roles = context.get("roles") or ()
        return cls(owner=str(context.get("owner") or SYSTEM_OWNER),
                   correlation_id=str(context.get("correlation_id") or ""),
                   email=str(context.get("email") or ""), name=str(context.get("name") or ""),
                   roles=tuple(str(r) for r in roles) if isinstance(roles, list | tuple) else ())


#: The owner of jobs no caller enqueued (schedules, S3 events, Streaq's own client).
SYSTEM_OWNER = "system"

#: The running job's context, set by the policy for the duration of each run.
JOB: ContextVar[JobContext] = ContextVar("offload_job")


def current_job() -> JobContext:
    """The running job's context. Outside the policy (a direct call): the system owner."""
    return JOB.get(JobContext(owner=SYSTEM_OWNER))


def backoff_seconds(tries: int, *, base: float = BACKOFF_BASE_SECONDS,
                    cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Delay before try ``tries + 1``: exponential, capped, with "equal jitter" (AWS
    Architecture Blog): half fixed so retries never bunch at zero, half random so a
    burst of failures does not retry in lockstep."""
    ceiling: float = min(cap, base * 2.0 ** max(0, tries - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True)
class Rules:
    """What the policy applies to one task: its name, its tries and its timeout."""

    name: str
    max_tries: int
    timeout_seconds: float | None


def rules_for(worker: Worker[Any], fn_name: str) -> Rules:
    """A catalogue job's options; for any other task registered on ``worker`` (a benchmark's
    no-op, an operator's one-off), the ones it was registered with (no ``max_tries``: one
    try; no ``timeout``: none)."""
    spec = CATALOGUE.get(fn_name)
    if spec is not None:
        return Rules(spec.name, spec.max_tries, spec.timeout_seconds)
    registered = worker.registry[fn_name]
    timeout = registered.timeout
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    return Rules(fn_name, registered.max_tries or 1, seconds)


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PermanentJobError | ValidationError)


@dataclass(frozen=True)
class Call:
    """One run of one task: Streaq's task context, its rules, the message's job context
    (owner, correlation id) and the task's own arguments."""

    task: TaskContext
    rules: Rules
    context: dict[str, str]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tries: int  # this run's try: Streaq's count less the deferrals (worker/fair_share.py)


class RetryPolicy:
    """The middleware: ``RetryPolicy(worker, keys, ...)`` registers it on ``worker``."""

    def __init__(self, worker: Worker[Any], keys: Keys, retention_seconds: int,  # noqa: PLR0913
                 dead_letter_ttl: int, result_max_bytes: int = 0,
                 fair: FairShare | None = None, events: Emitter | None = None,
                 metrics: JobMetrics | None = None) -> None:
        self._worker = worker
        self.metrics = metrics  # EMF job metrics; None: off
        self.events = events  # job events (started, progress, succeeded, failed); None: off
        self._hooks: dict[str, tuple[float, list[Webhook]]] = {}
        self.fair = fair  # per-owner running-job slots; None: no limit
        self.result_max_bytes = result_max_bytes  # 0: no cap
        self._keys = keys
        self._dead_letter_ttl = dead_letter_ttl
        self._retention = retention_seconds
        self._rules: dict[str, Rules] = {}  # per task name, read once (tasks may be added later)
        self._recorder = RunRecorder(worker, retention_seconds)
        self.running = RunningJobs.of(worker)
        self._middleware = worker.middleware(self._wrap)

    def _wrap(self, fn: AsyncFn) -> AsyncFn:
        async def run(*args: Any, **kwargs: Any) -> Any:
            return await self.run(fn, args, kwargs)

        return run

    def rules(self, fn_name: str) -> Rules:
        found = self._rules.get(fn_name)
        if found is None:
            found = self._rules[fn_name] = rules_for(self._worker, fn_name)
        return found

    async def run(self, fn: AsyncFn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``fn`` (the task) once under the policy, as the task Streaq is running."""
        task = self._middleware.context
        # The context the enqueue put beside the input (absent for a task enqueued by
        # other means, e.g. Streaq's own client: such a job has no metadata either).
        context: dict[str, str] = kwargs.pop(CONTEXT_KWARG, None) or {}
        rules = self.rules(task.fn_name)
        owner = context.get("owner") or SYSTEM_OWNER
        fair = self.fair
        deferred = await fair.deferrals(task.task_id) if fair and task.tries > 1 else 0
        lease = (rules.timeout_seconds or DEFAULT_LEASE_SECONDS) + STREAQ_GRACE_SECONDS
        slot = None
        if fair is not None and task.task_id not in self.running.jobs:  # a 2nd copy: no slot
            slot = await fair.acquire(owner, rules.name, lease)
            if slot is None:
                raise await fair.defer(task.task_id, deferred)
        call = Call(task, rules, context, args, kwargs, tries=task.tries - deferred)
        done = False
        try:
            if call.tries > rules.max_tries + 1:  # its worker died on every try
                await self._fail(RuntimeError("the job's worker stopped during each try"), call)
            result = await self.running.run(task.task_id, partial(self._first_copy, fn, call))
            done = True
            return result
        except CopyCancelled as exc:  # the copy that ran was cancelled: run it again
            raise StreaqRetry(str(exc), delay=timedelta(seconds=backoff_seconds(1))) from exc
        finally:
            if fair is not None and slot is not None:
                fair.release(slot)
            if done and limited(owner):  # the job no longer counts among the owner's
                await self._worker.redis.zrem(self._keys.unfinished(owner), [task.task_id])

    async def _first_copy(self, fn: AsyncFn, call: Call, run: JobRun) -> Any:
        task, rules = call.task, call.rules
        log.info("job %s %s try %d/%d correlation_id=%s", rules.name, task.task_id,
                 call.tries, rules.max_tries, call.context.get("correlation_id") or "-")
        self._measure_wait(call)  # before this run's own Redis writes and events
        run_key = self._keys.job(task.task_id) + ":run"
        self._recorder.started(run_key, call.tries)
        token = ATTEMPT.set(Attempt(call.tries, rules.max_tries))
        job_token = JOB.set(JobContext.from_message(call.context))
        await self._notify(call, "started")
        started = time.perf_counter()
        reporter = REPORTER.set(ProgressReporter(
            self._worker.redis, self._keys, task.task_id, self._retention,
            on_write=partial(self._emit_progress, call) if self.events else None))
        try:
            with run.scope:
                if rules.timeout_seconds is None:
                    result = await fn(*call.args, **call.kwargs)
                else:
                    with anyio.fail_after(rules.timeout_seconds):
                        result = await fn(*call.args, **call.kwargs)
                self._check_size(result)
                self._measure_run(call, started)
                await self._notify(call, "succeeded")
                return result
        except Exception as exc:
            if run.scope.cancel_called:
                raise self._cut_short(call) from exc
            self._measure_run(call, started)
            await self._fail(exc, call)
        finally:
            self._recorder.finished(run_key)
            ATTEMPT.reset(token)
            JOB.reset(job_token)
            REPORTER.reset(reporter)
        raise self._cut_short(call)  # the scope ended the job (see RunningJobs.cut_short_at)

    def _measure_wait(self, call: Call) -> None:
        """QueueWait on a job's first try, from the time the enqueue said it could start
        (absent for a pipeline's later steps and jobs enqueued by other means)."""
        ready = call.context.get(READY_KWARG, "")
        if self.metrics is not None and call.tries == 1 and ready.isdigit():
            self.metrics.waited(call.rules.name, now_ms() - int(ready))

    def _measure_run(self, call: Call, started: float) -> None:
        if self.metrics is not None:
            self.metrics.ran(call.rules.name, (time.perf_counter() - started) * 1000)

    def _emit(self, call: Call, state: str, *, error: dict[str, str] | None = None,
              progress: dict[str, Any] | None = None) -> dict[str, Any]:
        event = detail(call.task.task_id, call.rules.name,
                       call.context.get("owner") or SYSTEM_OWNER, state,
                       tries=call.tries, error=error, progress=progress)
        if self.events is not None:
            self.events.emit(event)
        return event

    async def _notify(self, call: Call, state: str,
                      error: dict[str, str] | None = None) -> None:
        """The job event (EventBridge or the dev file), and a delivery job for each of the
        owner's webhooks that asked for this state. Never fails the job."""
        owner = call.context.get("owner") or SYSTEM_OWNER
        hooked = owner not in RESERVED_OWNERS and call.rules.name != WEBHOOK_JOB
        if self.events is None and not hooked:
            return  # nothing to tell (the benchmarks' no-op jobs take this path)
        event = self._emit(call, state, error=error)
        if not hooked:
            return
        try:
            for hook in await self._webhooks_of(owner):
                if state in hook.events:
                    await self._worker.enqueue_unsafe(
                        WEBHOOK_JOB, webhook_id=hook.id, event=event,
                        **{CONTEXT_KWARG: {"owner": owner, READY_KWARG: str(now_ms())}}
                    ).start()
        except Exception as exc:  # a webhook is never worth a failed job
            log.warning("job %s: webhook deliveries not enqueued: %s: %s",
                        call.task.task_id, type(exc).__name__, exc)

    async def _webhooks_of(self, owner: str) -> list[Webhook]:
        """The owner's webhooks, read at most once per :data:`WEBHOOK_CACHE_SECONDS`."""
        now = time.monotonic()
        cached = self._hooks.get(owner)
        if cached is None or cached[0] < now:
            hooks = await webhooks.all_of(self._worker.redis, self._keys.prefix, owner)
            if len(self._hooks) > WEBHOOK_CACHE_OWNERS:
                self._hooks.clear()
            cached = self._hooks[owner] = (now + WEBHOOK_CACHE_SECONDS, hooks)
        return cached[1]

    def _emit_progress(self, call: Call, update: Progress) -> None:
        self._emit(call, "progress",
                   progress={"fraction": update.fraction, "message": update.message})

    def _check_size(self, result: Any) -> None:
        """A result over the cap fails the job for good: it would sit in Redis for the
        whole retention (big outputs belong in blob storage, with their key returned)."""
        if self.result_max_bytes <= 0 or result is None:
            return
        size = len(json.dumps(result, default=str).encode())
        if size > self.result_max_bytes:
            raise PermanentJobError(
                f"the job's result is {size} bytes, over the {self.result_max_bytes}-byte "
                f"limit (OFFLOAD_RESULT_MAX_BYTES): store large outputs with ctx.blobs and "
                f"return their key")

    def _cut_short(self, call: Call) -> StreaqRetry:
        log.warning("job %s %s was cut short; it will run again", call.rules.name,
                    call.task.task_id)
        delay = backoff_seconds(call.tries)
        return StreaqRetry("cut short", delay=timedelta(seconds=delay))

    async def _fail(self, exc: Exception, call: Call) -> None:
        """Retry ``exc`` (raise ``StreaqRetry``) or fail for good (raise ``JobFailure``)."""
        task, rules = call.task, call.rules
        permanent = is_permanent(exc)
        if self.metrics is not None:
            self.metrics.failed(rules.name, permanent=permanent)
        if not permanent and call.tries < rules.max_tries:
            delay = backoff_seconds(call.tries)
            log.warning("job %s %s failed (%s: %s); retry %d in %.1fs", rules.name,
                        task.task_id, type(exc).__name__, exc, call.tries + 1, delay)
            raise StreaqRetry(str(exc), delay=timedelta(seconds=delay)) from exc
        await self._notify(call, "failed", error={"type": type(exc).__name__,
                                                  "message": str(exc)[:500]})
        log.error("job %s %s failed for good after %d tries: %s: %s", rules.name,
                  task.task_id, call.tries, type(exc).__name__, exc)
        await self._dead_letter(exc, call)
        if self.metrics is not None:
            self.metrics.dead_lettered(rules.name)
        shown: Exception = exc
        if isinstance(exc, TimeoutError):
            shown = TimeoutError(f"job exceeded its {rules.timeout_seconds}s timeout")
        raise JobFailure.from_exception(shown, retryable=not permanent,
                                        tries=call.tries) from exc

    async def _dead_letter(self, exc: Exception, call: Call) -> None:
        args, kwargs = call.args, call.kwargs
        payload = kwargs or (args[0] if args and isinstance(args[0], dict) else {})
        redis = self._worker.redis
        # The metadata is authoritative for the owner (it decides who may list and retry
        # the letter); one read, on this rare path only.
        meta_raw = await redis.get(self._keys.job(call.task.task_id))
        meta = _json_object(meta_raw)
        letter = DeadLetter(
            id=call.task.task_id,
            name=call.rules.name,
            owner=meta.get("owner") or call.context.get("owner") or SYSTEM_OWNER,
            payload=payload,
            error_type=type(exc).__name__,
            error=str(exc) or type(exc).__name__,
            tries=call.tries,
            failed_at=datetime.now(UTC),
        )
        await record_dead_letter(redis, self._keys, self._dead_letter_ttl, letter)
        # The job (the whole pipeline, for a step) no longer counts as unfinished.
        await job_finished(redis, self._keys, letter.owner, pipeline_id(letter.id))


def pipeline_id(task_id: str) -> str:
    """A pipeline step's job id ("<id>-N") names its pipeline: "<id>"."""
    head, _, tail = task_id.rpartition("-")
    return head if head and tail.isdigit() and len(head) == 32 else task_id


def _json_object(raw: str | bytes | None) -> dict[str, Any]:
    """A stored JSON object, or ``{}`` when there is none."""
    found = json.loads(raw) if raw else {}
    return found if isinstance(found, dict) else {}
