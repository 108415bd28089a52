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
            record = _record_run_later(
                redis, keys.job(task.task_id) + ":run", task.tries, retention_seconds
            )
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
                record.cancel()
                _attempt.reset(token)

        return run


# Writes in flight, so the event loop keeps a reference to each until it is done.
_record_writes: set[asyncio.Task[None]] = set()


def _record_run_later(redis: Any, key: str, tries: int,
                      retention_seconds: int) -> asyncio.TimerHandle:
    """Write the run record (start time, try) if the run is still going after
    :data:`RUN_RECORD_AFTER_SECONDS`; cancel the returned handle when it ends."""
    loop = asyncio.get_running_loop()
    started_ms = now_ms()

    async def write() -> None:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, {"started_ms": str(started_ms), "tries": str(tries)})
                pipe.expire(key, retention_seconds)
        except Exception as exc:  # the job goes on; only its "started at" is missing
            log.warning("could not record the run of %s: %s: %s", key, type(exc).__name__,
                        exc)

    def fire() -> None:
        pending = loop.create_task(write())
        _record_writes.add(pending)
        pending.add_done_callback(_record_writes.discard)

    return loop.call_later(RUN_RECORD_AFTER_SECONDS, fire)
