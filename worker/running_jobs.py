"""The jobs one worker is running: each in its own cancel scope, each task id run once.

Streaq delivers a message at least once. A message that waited in this worker's prefetch
buffer longer than the idle timeout may be reclaimed by this same worker while its first
copy still runs, so two copies of one task can reach the retry policy in one process.
:meth:`RunningJobs.run` runs the first and makes the second wait for the first's outcome
and return (or raise) the same: the job's code runs once, and Streaq finishes both copies
of the message with one outcome.

The registry also holds each running job's cancel scope, so the Redis watchdog can give
every job in flight the grace period when Redis fails (:meth:`RunningJobs.cut_short_at`),
and tells :attr:`RunningJobs.on_busy` when the worker goes from idle to busy and back (ECS
task scale-in protection, :mod:`worker.task_protection`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import anyio

log = logging.getLogger("offload.worker")

T = TypeVar("T")


class CopyCancelled(Exception):
    """The first copy of a task ended without an outcome (cancelled): a second copy that
    waited for it has nothing to repeat."""


@dataclass(eq=False)
class JobRun:
    """One running job: the scope it runs in and, once it ends, its outcome."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    ended: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    error: BaseException | None = None

    async def outcome(self) -> Any:
        """Wait until the job ends; return its value or raise its exception."""
        await self.ended.wait()
        if isinstance(self.error, Exception):
            raise self.error
        if self.error is not None:
            raise CopyCancelled(f"{type(self.error).__name__}: {self.error}")
        return self.value


class RunningJobs:
    """Per worker: task id -> its running job."""

    _registry: WeakKeyDictionary[Any, RunningJobs] = WeakKeyDictionary()

    def __init__(self) -> None:
        self.jobs: dict[str, JobRun] = {}
        # Called with True when the first job starts and False when the last one ends.
        self.on_busy: Callable[[bool], None] | None = None

    @classmethod
    def of(cls, worker: Any) -> RunningJobs:
        """The registry of ``worker`` (one per worker object, made on first use)."""
        found = cls._registry.get(worker)
        if found is None:
            found = cls._registry[worker] = cls()
        return found

    async def run(self, task_id: str, call: Callable[[JobRun], Awaitable[T]]) -> T:
        """Run ``call`` as the job ``task_id``, unless that job runs here already: then wait
        for the running copy's outcome and return (or raise) the same."""
        first = self.jobs.get(task_id)
        if first is not None:
            log.info("job %s is already running in this worker; this copy waits for "
                     "its outcome", task_id)
            result: T = await first.outcome()
            return result
        run = self.jobs[task_id] = JobRun()
        if len(self.jobs) == 1 and self.on_busy is not None:
            self.on_busy(True)
        try:
            run.value = await call(run)
            return run.value  # type: ignore[no-any-return]
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            del self.jobs[task_id]
            run.ended.set()
            if not self.jobs and self.on_busy is not None:
                self.on_busy(False)

    def cut_short_at(self, deadline: float) -> int:
        """Cancel every running job at ``deadline`` (anyio time) at the latest; how many."""
        for run in self.jobs.values():
            run.scope.deadline = min(run.scope.deadline, deadline)
        return len(self.jobs)
