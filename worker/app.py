"""The Streaq worker: one task per catalogue entry, the shared retry policy, the lifespan.

``worker.app:worker`` is what ``offload worker`` (and Streaq's own CLI / web UI) runs.
"""

from __future__ import annotations

import gc
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
from streaq import Worker

from shared.config import Settings, get_settings
from shared.job_events import Emitter, sink_for
from shared.jobs import CATALOGUE, JobSpec
from shared.queue import Keys, make_streaq
from shared.queue.presence import keep_announced
from worker.context import WorkerContext, open_context
from worker.fair_share import FairShare, QuietDeferrals
from worker.job_metrics import JobMetrics
from worker.redelivery import release_unstarted, set_prefetch
from worker.redis_watchdog import redis_options
from worker.retry_policy import RetryPolicy
from worker.running_jobs import RunningJobs
from worker.tasks.base import JobImpl

log = logging.getLogger("offload.worker")
# One filter for the process: Streaq's retry records of fair-share deferrals are dropped.
QUIET_DEFERRALS = QuietDeferrals()

# Streaq's own timeout is a backstop behind the policy's (which retries); it fires only
# if a job ignores cancellation.
STREAQ_TIMEOUT_MARGIN_SECONDS = 10


def load_task_modules() -> dict[str, JobImpl]:
    """Import every module in ``worker.tasks`` so their ``@job`` decorators run."""
    import worker.tasks as package
    from worker.tasks.base import IMPLEMENTATIONS

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")
    return IMPLEMENTATIONS


def build_worker(settings: Settings, *, worker_id: str | None = None,
                 concurrency: int | None = None,
                 freeze_after_start: bool = False,
                 on_busy: Callable[[bool], None] | None = None) -> Worker[WorkerContext]:
    """A worker for ``settings`` with every catalogue task registered.

    ``on_busy`` is told True when the worker's first running job starts and False when its
    last one ends (:class:`worker.task_protection.BusyMarker`, on ECS).

    ``freeze_after_start`` (for a process that runs nothing but this worker, as
    ``offload worker`` does): once the lifespan has opened the job clients, everything
    allocated so far (modules, the catalogue, the clients) is moved out of the garbage
    collector's generations. It lives as long as the process, and otherwise every
    collection of the oldest generation, which the jobs' allocations keep triggering, walks
    it again (bench/README.md has what that costs).
    """
    holder: dict[str, Worker[WorkerContext]] = {}
    metrics = job_metrics(settings)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[WorkerContext]:
        me = holder["worker"]
        # keep_announced: counted as a live worker (autoscaling) while the lifespan is open.
        async with open_context(settings, me.redis) as ctx, \
                keep_announced(me.redis, Keys(settings.queue_name), me.id):
            if freeze_after_start:
                gc.unfreeze()  # a restart after a Redis fault: let the last run's garbage go
                gc.collect()
                gc.freeze()
            if metrics is not None:
                metrics.start()
            try:
                yield ctx
            finally:  # however the worker stops (even cancelled), what it measured is written
                # and the fair-share slots it holds go back (else they lapse with their lease)
                with anyio.CancelScope(shield=True):
                    if fair is not None:
                        with anyio.move_on_after(settings.redis_socket_timeout_seconds):
                            await fair.close()
                    if metrics is not None:
                        await anyio.to_thread.run_sync(metrics.close)
        # Reached when the worker stopped on its own (SIGTERM, end of a burst), not when
        # it is torn down after losing Redis: hand on what it fetched and did not start.
        with anyio.move_on_after(settings.redis_socket_timeout_seconds):
            try:
                await release_unstarted(holder["worker"])
            except Exception as exc:  # they are reclaimed after the idle timeout instead
                log.warning("could not hand on unstarted jobs: %s: %s",
                            type(exc).__name__, exc)

    worker: Worker[WorkerContext] = make_streaq(
        settings,
        concurrency=concurrency or settings.worker_concurrency,
        lifespan=lifespan,
        grace_period=settings.worker_grace_period_seconds,
        id=worker_id,
        redis_kwargs=redis_options(settings),
    )
    set_prefetch(worker, settings.worker_prefetch)
    holder["worker"] = worker
    fair = FairShare(worker, Keys(settings.queue_name), settings.owner_concurrency,
                     settings.fair_share_hold_seconds) if settings.owner_concurrency else None
    implementations = load_task_modules()
    missing = {n for n, s in CATALOGUE.items() if not s.is_pipeline} - implementations.keys()
    if missing:
        raise RuntimeError(f"catalogue jobs without an implementation: {sorted(missing)}")
    for name, impl in implementations.items():
        _register(worker, CATALOGUE[name], impl, settings)
    RetryPolicy(
        worker,
        Keys(settings.queue_name),
        settings.result_retention_seconds,
        settings.dead_letter_retention_seconds,
        settings.result_max_bytes,
        fair,
        _emitter(settings),
        metrics,
    )
    RunningJobs.of(worker).on_busy = on_busy
    logging.getLogger("streaq").addFilter(QUIET_DEFERRALS)
    return worker


def _emitter(settings: Settings) -> Emitter | None:
    """The process's job-event emitter (one background thread), or None when events are off."""
    sink = sink_for(settings)
    return Emitter(sink) if sink is not None else None


def job_metrics(settings: Settings) -> JobMetrics | None:
    """The worker's EMF job metrics, or None when ``OFFLOAD_WORKER_METRICS`` is off."""
    if not settings.worker_metrics:
        return None
    return JobMetrics(settings.worker_metrics_namespace, settings.queue_name,
                      interval=settings.worker_metrics_interval_seconds)


def _register(worker: Worker[WorkerContext], spec: JobSpec,
              impl: JobImpl, settings: Settings) -> None:
    async def run(*args: Any, **kwargs: Any) -> Any:
        # A pipeline step receives the previous step's result as its one positional arg.
        payload = args[0] if args and not kwargs else kwargs
        inp = spec.validate(payload)
        return await impl(worker.context, inp)

    run.__qualname__ = run.__name__ = spec.name
    worker.task(
        name=spec.name,
        timeout=timedelta(seconds=spec.timeout_seconds + STREAQ_TIMEOUT_MARGIN_SECONDS),
        # No limit in Streaq: the policy counts tries itself (a fair-share deferral is not
        # one) and dead-letters a job past them, even one whose worker died on each try.
        max_tries=None,
        ttl=timedelta(seconds=spec.result_ttl_seconds or settings.result_retention_seconds),
    )(run)


def __getattr__(name: str) -> Any:
    # ``worker.app:worker`` for Streaq's CLI and web UI, built on first access so that
    # importing this module (tests, the catalogue check) does not read the environment.
    if name == "worker":
        return build_worker(get_settings())
    raise AttributeError(name)
