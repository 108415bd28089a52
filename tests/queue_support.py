"""Helpers for the queue client's tests: a plain Streaq worker (built as every Offload
process builds one) that runs stand-ins for catalogue jobs and records each run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from streaq import Worker

from shared.config import Settings
from shared.jobs import CONTEXT_KWARG
from shared.queue import make_streaq

Body = Callable[[dict[str, Any]], Awaitable[Any]]


async def _ok(kwargs: dict[str, Any]) -> Any:
    return {"ok": True}


@dataclass
class Runs:
    """Each run of a stand-in task: (task id, the owner its message carried)."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def of(self, job_id: str) -> list[str]:
        return [owner for task_id, owner in self.seen if task_id == job_id]


def stand_in_worker(settings: Settings, bodies: dict[str, Body], runs: Runs,
                    **worker_kwargs: Any) -> Worker[Any]:
    """A worker running ``bodies`` (task name -> what it does with its keyword arguments)
    under catalogue names, without the retry policy, MongoDB or S3."""
    worker = make_streaq(settings, handle_signals=False, **worker_kwargs)
    for name, body in bodies.items():
        _register(worker, name, body, runs)
    return worker


def _register(worker: Worker[Any], name: str, body: Body, runs: Runs) -> None:
    async def run(*args: Any, **kwargs: Any) -> Any:
        context = kwargs.get(CONTEXT_KWARG) or {}
        runs.seen.append((registered.context.task_id, str(context.get("owner", ""))))
        return await body(kwargs if not args else {"previous": args[0], **kwargs})

    registered = worker.task(name=name, max_tries=1)(run)


@asynccontextmanager
async def running(*workers: Worker[Any]) -> AsyncIterator[None]:
    """Run ``workers`` for the block's duration. Jobs still running at its end may finish
    first (bounded), so that stopping a worker never cuts its writes mid-pipeline."""
    async with anyio.create_task_group() as tg:
        for worker in workers:
            await tg.start(worker.run_async)
        yield
        with anyio.move_on_after(15):
            while any(worker.running() for worker in workers):
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


OK: Body = _ok
