"""Benchmark 3: no-op jobs per second drained by ``offload worker`` vs a bare Streaq worker.

Per trial: an empty private Redis gets N no-op jobs (10,000; two trials per kind and
process count, so 20,000 in all) (one pipelined ``enqueue_many``),
then P worker processes of one kind start in burst mode. The parent samples the streams'
length (Streaq deletes an entry when its task finishes) every few milliseconds; the rate
is taken between 10 % and 90 % drained, so process start-up (imports, the lifespan) and
the tail, where fewer than ``concurrency`` jobs remain, do not count. Trials rotate the
two kinds, for 1 and 2 processes, for several rounds, all on the same Redis.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.procs import ROOT, clean_env, python_command
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations
from bench.worker_child import TASK_NAME
from infra.local.private_redis import RedisServer

KINDS = ("bare", "offload")
POLL_SECONDS = 0.002
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"


def _settings_env(redis_url: str, queue: str) -> dict[str, str]:
    return clean_env(OFFLOAD_REDIS_URL=redis_url, OFFLOAD_QUEUE_NAME=queue,
                     OFFLOAD_SIGNING_SECRET=SIGNING_SECRET)


def _client(redis_url: str, queue: str) -> Any:
    from shared.config import Settings
    from shared.queue import make_streaq

    return make_streaq(Settings(redis_url=redis_url, queue_name=queue,
                                signing_secret=SIGNING_SECRET))


async def _fill(redis_url: str, queue: str, jobs: int) -> list[str]:
    """Enqueue ``jobs`` no-ops on an empty Redis; return a sample of their ids to check."""
    ids: list[str] = []
    async with _client(redis_url, queue) as client:
        await client.redis.flushall()
        for start in range(0, jobs, 2000):
            batch = [client.enqueue_unsafe(TASK_NAME) for _ in range(min(2000, jobs - start))]
            await client.enqueue_many(batch)
            ids += [batch[0].id, batch[-1].id]
    return ids


async def _redis_cpu_seconds(redis_url: str) -> float:
    """The server's own CPU time so far (user + system), from INFO."""
    async with _client(redis_url, "bench") as client:
        info = await client.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _failures(redis_url: str, queue: str, ids: list[str]) -> list[str]:
    """Which of ``ids`` did not succeed (a worker that fails every job drains fast too)."""
    bad = []
    async with _client(redis_url, queue) as client:
        for task_id in ids:
            result = await client.result_by_id(task_id, timeout=5)
            if not result.success:
                bad.append(f"{task_id}: {result.exception!r}")
    return bad


async def _remaining(redis: Any, streams: list[str]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        lengths = [pipe.xlen(s) for s in streams]
    return sum([await n for n in lengths])


async def _watch(redis_url: str, queue: str, jobs: int,
                 procs: list[subprocess.Popen[bytes]], timeout: float) -> list[tuple[float, int]]:
    client = _client(redis_url, queue)
    streams = [client.stream_key + p for p in client.priorities]
    timeline: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    async with client:
        while time.monotonic() < deadline:
            left = await _remaining(client.redis, streams)
            timeline.append((time.monotonic(), left))
            if left == 0 or all(p.poll() is not None for p in procs):
                break
            await asyncio.sleep(POLL_SECONDS)
    return timeline


def _rate(timeline: list[tuple[float, int]], jobs: int) -> float:
    """Jobs per second between 10 % and 90 % of ``jobs`` done."""
    def when(done: int) -> float:
        return next(t for t, left in timeline if jobs - left >= done)

    low, high = int(jobs * 0.1), int(jobs * 0.9)
    return (high - low) / (when(high) - when(low))


def trial(redis_url: str, kind: str, processes: int, jobs: int, logdir: Path) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    sample = asyncio.run(_fill(redis_url, queue, jobs))
    redis_cpu = asyncio.run(_redis_cpu_seconds(redis_url))
    env = _settings_env(redis_url, queue)
    logs = [(logdir / f"{queue}-{kind}-{i}.log").open("wb") for i in range(processes)]
    start = time.monotonic()
    procs = [subprocess.Popen(python_command("-m", "bench.worker_child", kind), cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        timeline = asyncio.run(_watch(redis_url, queue, jobs, procs, timeout=300))
        codes = [p.wait(60) for p in procs]
        redis_cpu = asyncio.run(_redis_cpu_seconds(redis_url)) - redis_cpu
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for log in logs:
            log.close()
    left = timeline[-1][1]
    failed = asyncio.run(_failures(redis_url, queue, sample))
    if left or any(codes) or failed:
        tail = (logdir / f"{queue}-{kind}-0.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{kind} x{processes}: {left} jobs left, exit codes {codes}, "
                           f"failed {failed[:3]}\n{tail}")
    first = next(t for t, n in timeline if n < jobs)
    cpu = sum(_cpu_seconds(logdir / f"{queue}-{kind}-{i}.log") for i in range(processes))
    return {"kind": kind, "processes": processes, "jobs": jobs,
            "rate_10_90": _rate(timeline, jobs),
            "rate_whole": jobs / (timeline[-1][0] - first),
            "cpu_us_per_job": cpu / jobs * 1e6,
            "redis_cpu_us_per_job": redis_cpu / jobs * 1e6,
            "startup_s": first - start}


def _cpu_seconds(log: Path) -> float:
    """What a worker child reported as its CPU time since its first job."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("bench-cpu-seconds "):
            return float(line.split()[1])
    return 0.0


def run(config: BenchConfig) -> BenchResult:
    # 20,000 jobs per kind and process count, drained as two interleaved trials of 10,000:
    # one trial of 20,000 each would take ~7 minutes of a ~10-minute budget.
    jobs, rounds = (1_000, 1) if config.quick else (10_000, 2)
    counts = (1,) if config.quick else (1, 2)
    logdir = config.workdir / "worker-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    trials: list[dict[str, Any]] = []
    with RedisServer() as redis:
        for order in rotations(list(KINDS), rounds):
            for processes in counts:
                for kind in order:
                    trials.append(trial(redis.url, kind, processes, jobs, logdir))
        redis_version = redis.version()
    rows, goals = [], []
    for processes in counts:
        rates = {k: [t["rate_10_90"] for t in trials
                     if t["kind"] == k and t["processes"] == processes] for k in KINDS}
        whole = {k: [t["rate_whole"] for t in trials
                     if t["kind"] == k and t["processes"] == processes] for k in KINDS}
        cpu = {k: [t["cpu_us_per_job"] for t in trials
                   if t["kind"] == k and t["processes"] == processes] for k in KINDS}
        server = {k: [t["redis_cpu_us_per_job"] for t in trials
                      if t["kind"] == k and t["processes"] == processes] for k in KINDS}
        r = ratio(median(rates["offload"]), median(rates["bare"]))
        for k in KINDS:
            rows.append([processes, k, median(rates[k]), median(whole[k]),
                         ratio(median(rates[k]), median(rates["bare"])), median(cpu[k]),
                         median(server[k]), " ".join(f"{x:.0f}" for x in rates[k])])
        goals.append(Goal(f"{processes} process(es): offload worker >= 0.85x bare Streaq",
                          f"{median(rates['offload']):.0f} vs {median(rates['bare']):.0f} "
                          f"jobs/s = {r:.2f}x", r >= 0.85))
    return BenchResult(
        name="worker_throughput",
        title=f"3. Worker throughput (no-op jobs/s, {rounds} trials of {jobs} jobs each)",
        headers=["processes", "worker", "median jobs/s (10-90%)", "median jobs/s (whole)",
                 "x bare", "worker CPU us/job", "redis-server CPU us/job",
                 "each trial (jobs/s)"],
        rows=rows, goals=goals,
        notes=[f"{rounds} rounds, kinds rotated; concurrency "
               f"{_concurrency()} per process; redis-server {redis_version}"],
        data={"trials": trials, "redis_server": redis_version,
              "settings": json.loads(json.dumps({"concurrency": _concurrency()}))},
    )


def _concurrency() -> int:
    from shared.config import Settings

    return Settings().worker_concurrency
