"""How a task module declares its jobs: ``@job("name")`` on ``async def f(ctx, inp)``.

The decorator only records the implementation; :func:`worker.app.build_worker` registers
each one with Streaq under its catalogue name and options, so names, input models and
options have a single source (``shared.jobs``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.jobs import CATALOGUE, JobInput
from worker.context import WorkerContext

In = TypeVar("In", bound=JobInput)
JobImpl = Callable[[WorkerContext, Any], Awaitable[Any]]

IMPLEMENTATIONS: dict[str, JobImpl] = {}


def job(name: str) -> Callable[[Callable[[WorkerContext, In], Awaitable[Any]]], JobImpl]:
    """Register ``fn`` as the implementation of catalogue job ``name``."""
    spec = CATALOGUE.get(name)
    if spec is None or spec.is_pipeline:
        raise KeyError(f"{name!r} is not a task in the job catalogue")

    def decorate(fn: Callable[[WorkerContext, In], Awaitable[Any]]) -> JobImpl:
        if name in IMPLEMENTATIONS:
            raise KeyError(f"job {name!r} is implemented twice")
        IMPLEMENTATIONS[name] = fn
        return fn

    return decorate
