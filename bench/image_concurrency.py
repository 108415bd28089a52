"""Benchmark 1b: image jobs at once in one worker process (1, 4 and 16 concurrent).

Each trial is a fresh process (``python -m bench.image_concurrency INPUT N JOBS LIMIT``)
that runs ``JOBS`` images, ``N`` at a time, the way ``process_uploaded_image`` runs them:
``prepare_image`` then ``encode_large``, each in a worker thread, inside one of the
job's image slots (``worker.tasks.images.ImageSlot``: one image per CPU, from decode to
encoded). ``LIMIT`` ``none`` runs the same work with no slot, behind anyio's default
thread limiter (40 threads), for contrast. Reported: jobs/s, jobs/s per vCPU this process
may use, CPU ms per job, and the peak RSS increase over the warmed-up process.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench import inputs, memory
from bench.image_job import _env
from bench.procs import python_command, run_json
from bench.report import BenchConfig, BenchResult
from bench.stats import median

INPUTS = ("12mp_jpeg", "12mp_png")
CONCURRENCY = (1, 4, 16)
MAX_PIXELS = 50_000_000


async def _jobs(data: bytes, concurrency: int, count: int, limited: bool) -> None:
    from contextlib import AsyncExitStack

    import anyio

    from worker.imaging import prepare_image
    from worker.tasks.images import ImageSlot

    jobs_at_once = anyio.Semaphore(concurrency)

    async def one() -> None:
        async with jobs_at_once, AsyncExitStack() as stack:
            if limited:
                await stack.enter_async_context(ImageSlot())
            prepared = await anyio.to_thread.run_sync(
                partial(prepare_image, data, max_pixels=MAX_PIXELS))
            await anyio.to_thread.run_sync(prepared.encode_large)

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)


def trial(path: str, concurrency: int, count: int, limit: str) -> dict[str, Any]:
    """One trial in this (fresh) process."""
    import anyio

    from worker.imaging import process_image
    from worker.tasks.images import available_cpus

    data = Path(path).read_bytes()
    process_image(data, max_pixels=MAX_PIXELS)  # engines loaded, as in a warm worker
    memory.reset_peak()
    before = memory.rss_kib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    anyio.run(_jobs, data, concurrency, count, limit == "cpus")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    cpus = available_cpus()
    return {"jobs": count, "wall_s": wall, "cpu_s": cpu, "cpus": cpus,
            "jobs_per_s": count / wall, "jobs_per_s_per_vcpu": count / wall / cpus,
            "cpu_ms_per_job": cpu / count * 1000,
            "rss_increase_mb": (memory.peak_kib() - before) * 1024 / 1e6}


def run(config: BenchConfig) -> BenchResult:
    jobs, repeat = (8, 1) if config.quick else (32, 3)
    paths = inputs.make_inputs(inputs.cache_dir(), list(INPUTS))
    variants = [(n, c, "cpus") for n in INPUTS for c in CONCURRENCY]
    variants += [(n, 16, "none") for n in INPUTS]
    found: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeat):  # variants interleaved, each trial a fresh process
        for name, concurrency, limit in variants:
            command = python_command("-m", "bench.image_concurrency", str(paths[name]),
                                     str(concurrency), str(jobs), limit)
            found.setdefault(f"{name} {concurrency} {limit}", []).append(
                run_json(command, _env(), timeout=900))
    rows = []
    for name, concurrency, limit in variants:
        trials = found[f"{name} {concurrency} {limit}"]
        pick = {k: median([t[k] for t in trials]) for k in
                ("jobs_per_s", "jobs_per_s_per_vcpu", "cpu_ms_per_job", "rss_increase_mb")}
        rows.append([name, concurrency, "image slots" if limit == "cpus" else "40 threads",
                     trials[0]["cpus"], pick["jobs_per_s"], pick["jobs_per_s_per_vcpu"],
                     pick["cpu_ms_per_job"], pick["rss_increase_mb"]])
    return BenchResult(
        name="image_concurrency",
        title="1b. Image jobs at once in one worker process",
        headers=["input", "at once", "threads for images", "vCPUs", "jobs/s",
                 "jobs/s per vCPU", "CPU ms/job", "peak RSS +MB"],
        rows=rows,
        notes=[f"{jobs} jobs per trial, median of {repeat} fresh-process trials; the "
               "machine is shared, so jobs/s depends on its load: CPU ms/job does less"],
        data={"trials": found},
    )


if __name__ == "__main__":
    path, concurrency, count, limit = sys.argv[1:5]
    print(json.dumps(trial(path, int(concurrency), int(count), limit)))
