"""The retry policy every job shares, as one Streaq middleware.

- ``PermanentJobError`` and invalid input fail at once, with their reason.
- Anything else (throttling, network, timeouts, bugs) is retried with exponential backoff
  and jitter until the job's ``max_tries``; then it fails for good.
- A job that fails for good becomes a dead letter in Redis (name, payload, owner, error,
  tries, time), listable and re-enqueueable through the API without MongoDB.
- Each run logs its try and the request's correlation id, both read from the message
  itself (no Redis read per run); a run that lasts longer than
  :data:`RUN_RECORD_AFTER_SECONDS` also records its try count and start time in Redis for
  the status API. A short job therefore costs the policy no Redis command at all: on this
  path, throughput is the point (``bench/``, worker throughput).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from pydantic import ValidationError
from streaq import StreaqRetry, Worker

from shared.errors import PermanentJobError
from shared.jobs import CATALOGUE, CONTEXT_KWARG
from shared.queue import DeadLetter, Keys, now_ms, record_dead_letter

log = logging.getLogger("offload.worker")

# A run still going after this long writes its start time and try to Redis (the status
# API shows them); shorter runs write nothing, and the status of a finished job comes from
# its result.
RUN_RECORD_AFTER_SECONDS = 0.1

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


_attempt: ContextVar[Attempt] = ContextVar("offload_attempt")


def current_attempt() -> Attempt:
    """The running job's try; jobs use it to record a final failure on their last try.
    Outside the policy (a direct call) there is no retry, so the one try is the last."""
    return _attempt.get(Attempt(tries=1, max_tries=1))


@contextmanager
def attempt(tries: int, max_tries: int) -> Iterator[Attempt]:
    """Run the enclosed code as try ``tries`` of ``max_tries``."""
    current = Attempt(tries, max_tries)
    token = _attempt.set(current)
    try:
        yield current
    finally:
        _attempt.reset(token)


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


def install_retry_policy(worker: Worker[Any], keys: Keys, retention_seconds: int,
                         dead_letter_ttl: int) -> None:
    """Register the policy middleware on ``worker``."""

    rules: dict[str, Rules] = {}  # per task name, read once (tasks may be added later)
    recorder = RunRecorder(worker, retention_seconds)

    @worker.middleware
    def retry_policy(fn: AsyncFn) -> AsyncFn:
        async def run(*args: Any, **kwargs: Any) -> Any:
            task = retry_policy.context
            spec = rules.get(task.fn_name)
            if spec is None:
                spec = rules[task.fn_name] = rules_for(worker, task.fn_name)
            redis = worker.redis
            # The context the enqueue put beside the input (absent for a task enqueued by
            # other means, e.g. Streaq's own client: such a job has no metadata either).
            context: dict[str, str] = kwargs.pop(CONTEXT_KWARG, None) or {}
            log.info(
                "job %s %s try %d/%d correlation_id=%s",
                spec.name, task.task_id, task.tries, spec.max_tries,
                context.get("correlation_id") or "-",
            )
            run_key = keys.job(task.task_id) + ":run"
            recorder.started(run_key, task.tries)
            token = _attempt.set(Attempt(task.tries, spec.max_tries))
            try:
                if spec.timeout_seconds is None:
                    return await fn(*args, **kwargs)
                with anyio.fail_after(spec.timeout_seconds):
                    return await fn(*args, **kwargs)
            except Exception as exc:
                final = is_permanent(exc) or task.tries >= spec.max_tries
                if not final:
                    delay = backoff_seconds(task.tries)
                    log.warning(
                        "job %s %s failed (%s: %s); retry %d in %.1fs",
                        spec.name, task.task_id, type(exc).__name__, exc,
                        task.tries + 1, delay,
                    )
                    raise StreaqRetry(str(exc), delay=timedelta(seconds=delay)) from exc
                log.error(
                    "job %s %s failed for good after %d tries: %s: %s",
                    spec.name, task.task_id, task.tries, type(exc).__name__, exc,
                )
                payload = kwargs or (args[0] if args and isinstance(args[0], dict) else {})
                # The metadata is authoritative for the owner (it decides who may list and
                # retry the letter); one read, on this rare path only.
                meta_raw = await redis.get(keys.job(task.task_id))
                meta: dict[str, str] = json.loads(meta_raw) if meta_raw else {}
                letter = DeadLetter(
                    id=task.task_id,
                    name=spec.name,
                    owner=meta.get("owner") or context.get("owner") or "system",
                    payload=payload,
                    error_type=type(exc).__name__,
                    error=str(exc) or type(exc).__name__,
                    tries=task.tries,
                    failed_at=datetime.now(UTC),
                )
                await record_dead_letter(redis, keys, dead_letter_ttl, letter)
                if isinstance(exc, TimeoutError):
                    raise TimeoutError(
                        f"job exceeded its {spec.timeout_seconds}s timeout"
                    ) from exc
                raise
            finally:
                recorder.finished(run_key)
                _attempt.reset(token)

        return run


class RunRecorder:
    """Writes the run record (start time, try) of each job still running after
    :data:`RUN_RECORD_AFTER_SECONDS`, for the status API.

    One check that often for all of a worker's running jobs, by a task that lives while
    any job runs, rather than a timer per job: a short job costs a dict insert and pop."""

    def __init__(self, worker: Worker[Any], retention_seconds: int) -> None:
        self._worker = worker
        self._retention = retention_seconds
        # run key -> [started_ms, tries, recorded]
        self._running: dict[str, list[int]] = {}
        self._ticker: asyncio.Task[None] | None = None

    def started(self, key: str, tries: int) -> None:
        self._running[key] = [now_ms(), tries, 0]
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def finished(self, key: str) -> None:
        self._running.pop(key, None)

    async def _tick(self) -> None:
        while self._running:
            await asyncio.sleep(RUN_RECORD_AFTER_SECONDS)
            due_ms = now_ms() - round(RUN_RECORD_AFTER_SECONDS * 1000)
            due = [(key, run) for key, run in self._running.items()
                   if not run[2] and run[0] <= due_ms]
            if not due:
                continue
            try:
                async with self._worker.redis.pipeline(transaction=False) as pipe:
                    for key, (started_ms, tries, _) in due:
                        pipe.hset(key, {"started_ms": str(started_ms), "tries": str(tries)})
                        pipe.expire(key, self._retention)
            except Exception as exc:  # the jobs go on; only their "started at" is missing
                log.warning("could not record %d run(s): %s: %s", len(due),
                            type(exc).__name__, exc)
            for _, run in due:
                run[2] = 1
