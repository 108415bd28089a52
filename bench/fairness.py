"""Fairness: tenant A floods the queue, tenant B enqueues a few; how long does B wait?

One worker (``worker.app.build_worker``, the policy middleware with fair share) of
concurrency 16 in this process, on a private Redis. A enqueues 2,000 jobs of 20 ms, then B
enqueues 20, each through the API's path (``JobQueue.admit``, ``fair_priority``,
``JobQueue.enqueue``); B's wait is from its enqueue to its job's start. Four cases side by
side: the per-owner limit of 8 with the flood demoted to the lowest priority after 32
unfinished jobs (the default), the limit alone, no limit (B waits behind A's backlog), and
B alone on an idle queue.
Then the limiter's cost: no-op jobs/s with and without it, spread over many owners so the
limit never binds (what is measured is the slot bookkeeping, not the limit): 500 owners, so
an owner's next job usually finds the slot its last one freed still held by the worker;
and every job its own owner, so that every start pays a round trip for its slot (with
and without the limiter, as each new owner also costs a webhook lookup).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations
from infra.local.private_redis import RedisServer
from shared.jobs import CATALOGUE, CONTEXT_KWARG, JobInput, JobSpec
from shared.limits import fair_priority

CONCURRENCY = 16
LIMIT = 8
DEMOTE_AFTER = 32
TASK = "fair_bench"
# How many of a tenant's enqueues are in flight at once (API instances side by side).
ENQUEUERS = 32


class FairBenchInput(JobInput):
    tag: str


def _settings(redis_url: str, limit: int, demote_after: int = 0) -> Any:
    from shared.config import Settings

    return Settings(redis_url=redis_url, queue_name=f"fair-{uuid.uuid4().hex[:8]}",
                    owner_concurrency=limit, worker_concurrency=CONCURRENCY,
                    fair_share_demote_after=demote_after, limit_enqueue_per_second=0,
                    limit_unfinished_jobs=0)


@contextmanager
def bench_job() -> Iterator[None]:
    """The bench's job in the catalogue while it runs, so it is enqueued as any job is."""
    CATALOGUE[TASK] = JobSpec(name=TASK, input_model=FairBenchInput, timeout_seconds=60,
                              max_tries=3, description="The fairness bench's sleeping job.")
    try:
        yield
    finally:
        del CATALOGUE[TASK]


async def _enqueue_as_the_api(queue: Any, settings: Any, owner: str, tag: str) -> None:
    unfinished = await queue.admit(owner)
    await queue.enqueue(TASK, {"tag": tag}, owner=owner,
                        priority=fair_priority(settings, unfinished, None))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _scenario(redis_url: str, limit: int, flood: int, few: int, job_ms: float,
                    owners: int = 1, demote_after: int = 0) -> dict[str, Any]:
    """Run ``flood`` jobs of tenant A (spread over ``owners`` ids) then ``few`` of B; B's
    waits (ms) and the whole run's jobs/s. With one owner each, jobs go through the API's
    enqueue path; spread over many (the no-op throughput), straight to Streaq in bulk."""
    from worker.app import build_worker

    settings = _settings(redis_url, limit, demote_after)
    worker = build_worker(settings, concurrency=CONCURRENCY)
    starts: dict[str, float] = {}
    finished: list[str] = []
    done = anyio.Event()
    total = flood + few + 1

    @worker.task(name=TASK, timeout=60, max_tries=None)
    async def fair_bench(tag: str) -> None:  # the catalogue's input, as keyword arguments
        starts[tag] = time.time() * 1000
        if job_ms:
            await asyncio.sleep(job_ms / 1000)
        finished.append(tag)
        if len(finished) == total:
            done.set()

    worker.handle_signals = False
    # In the catalogue only once the worker is built (it registers the job itself).
    with bench_job():
        return await _run(worker, settings, starts, done, flood, few, owners)


async def _run(worker: Any, settings: Any, starts: dict[str, float], done: anyio.Event,
               flood: int, few: int, owners: int) -> dict[str, Any]:
    from shared.queue import JobQueue

    async with anyio.create_task_group() as tg:
        await tg.start(worker.run_async)
        # One job first, so the measured ones do not pay for the worker's warm-up.
        warm = await worker.enqueue_unsafe(TASK, tag="warm-up").start()
        await warm.result(timeout=30)
        began, cpu_began = time.perf_counter(), time.process_time()
        enqueued: dict[str, float] = {}
        if owners == 1:
            async with JobQueue(settings) as queue:
                for owner, count in (("tenant-a", flood), ("tenant-b", few)):
                    tags = [f"{owner}:{i}" for i in range(count)]
                    for start in range(0, count, ENQUEUERS):
                        chunk = tags[start:start + ENQUEUERS]
                        now = time.time() * 1000
                        enqueued.update(dict.fromkeys(chunk, now))
                        await asyncio.gather(*(_enqueue_as_the_api(queue, settings, owner, t)
                                               for t in chunk))
        else:
            for owner_prefix, count in (("tenant-a", flood), ("tenant-b", few)):
                batch = []
                for i in range(count):
                    owner = f"{owner_prefix}-{i % owners}"
                    tag = f"{owner_prefix}:{i}"
                    batch.append(worker.enqueue_unsafe(
                        TASK, tag=tag, **{CONTEXT_KWARG: {"owner": owner}}))
                    enqueued[tag] = time.time() * 1000
                for start in range(0, len(batch), 1000):
                    await worker.enqueue_many(batch[start:start + 1000])
        with anyio.fail_after(600):
            await done.wait()
        seconds = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        tg.cancel_scope.cancel()
    waits = [starts[t] - enqueued[t] for t in enqueued if t.startswith("tenant-b")]
    a_first = [starts[t] for t in enqueued if t.startswith("tenant-a")]
    return {"b_waits_ms": waits, "jobs_per_s": (flood + few) / seconds, "seconds": seconds,
            "cpu_us_per_job": cpu * 1e6 / (flood + few),
            "a_span_ms": (max(a_first) - min(a_first)) if a_first else 0.0}


def run(config: BenchConfig) -> BenchResult:
    flood, few, job_ms = (200, 10, 20.0) if config.quick else (2000, 20, 20.0)
    noops, rounds = (1000, 1) if config.quick else (5000, 5)
    with RedisServer() as redis:
        idle = asyncio.run(_scenario(redis.url, LIMIT, 0, few, job_ms, demote_after=DEMOTE_AFTER))
        demoted = asyncio.run(_scenario(redis.url, LIMIT, flood, few, job_ms,
                                        demote_after=DEMOTE_AFTER))
        limited = asyncio.run(_scenario(redis.url, LIMIT, flood, few, job_ms))
        unlimited = asyncio.run(_scenario(redis.url, 0, flood, few, job_ms))
        # No-op variants: name -> (limit, owners). Rounds of the four, rotated, so drift
        # in the machine's load hits each; a cost is the median of the rounds' ratios of
        # "on" to "off" with the same owners (each new owner costs a webhook lookup).
        variants = {"off": (0, 500), "on": (LIMIT, 500),
                    "off, own owners": (0, noops), "on, own owners": (LIMIT, noops)}
        noop: dict[str, dict[str, list[float]]] = {
            name: {"jobs_per_s": [], "cpu_us_per_job": []} for name in variants}
        for order in rotations(list(variants), rounds):
            for name in order:
                limit, owners = variants[name]
                found = asyncio.run(_scenario(redis.url, limit, noops, 0, 0, owners=owners))
                for measure, values in noop[name].items():
                    values.append(found[measure])
    cases = [("B alone (idle queue)", idle),
             (f"A's flood, limit {LIMIT}, demoted after {DEMOTE_AFTER} (default)", demoted),
             (f"A's flood, limit {LIMIT} alone", limited),
             ("A's flood, no limit", unlimited)]
    rows = [[name, f"{p95(c['b_waits_ms']):.0f}", f"{median(c['b_waits_ms']):.0f}",
             f"{c['seconds']:.1f}"] for name, c in cases]
    idle_p95, limited_p95 = p95(idle["b_waits_ms"]), p95(demoted["b_waits_ms"])
    on, off, lone, lone_off = (noop[name]["jobs_per_s"] for name in (
        "on", "off", "on, own owners", "off, own owners"))
    cost = 1 - median([ratio(a, b) for a, b in zip(on, off, strict=True)])
    lone_cost = 1 - median([ratio(a, b) for a, b in zip(lone, lone_off, strict=True)])
    goals = [
        Goal(f"B's p95 wait with A's flood <= 3x B's p95 on an idle queue (limit {LIMIT}, "
             f"demoted after {DEMOTE_AFTER})",
             f"{limited_p95:.0f} ms vs {idle_p95:.0f} ms idle = "
             f"{ratio(limited_p95, idle_p95):.2f}x (limit alone: "
             f"{p95(limited['b_waits_ms']):.0f} ms; no limit: "
             f"{p95(unlimited['b_waits_ms']):.0f} ms)", limited_p95 <= 3 * idle_p95),
        Goal("the limiter costs <= 10% of no-op throughput",
             f"{median(on):.0f} vs {median(off):.0f} jobs/s (medians); median of "
             f"{rounds} rounds: {cost * 100:.1f}% cost (every job its own owner: "
             f"{lone_cost * 100:.1f}%)",
             cost <= 0.10),
    ]
    rows += [[f"no-op jobs/s, limiter {name}", f"{median(noop[name]['jobs_per_s']):.0f}",
              f"{median(noop[name]['cpu_us_per_job']):.0f} CPU us/job", ""]
             for name in variants]
    return BenchResult(
        name="fairness",
        title=f"Fairness: A enqueues {flood} x {job_ms:.0f} ms jobs, then B {few} "
              f"(1 worker, concurrency {CONCURRENCY})",
        headers=["case", "B p95 wait (ms)", "B median wait (ms)", "run (s)"],
        rows=rows, goals=goals,
        notes=[f"no-op throughput: {noops} jobs over 500 owners or one owner each, {rounds} "
               f"rotated rounds, limit {LIMIT} (never binding); per round, on/off jobs/s: "
               + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(on, off, strict=True))
               + "; own owners, on/off: "
               + ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(lone, lone_off, strict=True))],
        data={"idle": idle, "demoted": demoted, "limited": limited, "unlimited": unlimited,
              "noop": noop},
    )
