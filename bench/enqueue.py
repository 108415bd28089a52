"""Benchmark 4: the enqueue path, a warm ``functions.api`` invocation vs a bare enqueue.

The handler call is a whole API Gateway payload-2.0 ``POST /jobs/generate_sales_report``
through ``functions.api.lambda_handler`` (the gate, Powertools' router and request
validation, the caller from the JWT claims, the job's ownership/idempotency metadata, the
Streaq enqueue, the 202 response with its log line and ``single_metric`` EMF count), with
and without an ``Idempotency-Key``; the bare call is
``enqueue_unsafe(...)`` of the same job on a connected client. All run in one process, on
one thread, in rotation, on a private Redis.
"""

from __future__ import annotations

import json
import subprocess

from bench.procs import ROOT, clean_env, python_command
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import percentile, ratio, summary
from infra.local.private_redis import RedisServer

P99_LIMIT_MS = 5.0
# What the handler may add to a bare publish, at the median.
P50_OVERHEAD_LIMIT_MS = 1.0


def run(config: BenchConfig) -> BenchResult:
    calls = 300 if config.quick else 2000
    out = config.workdir / "enqueue.json"
    log = config.workdir / "enqueue-stdout.log"
    with RedisServer() as redis, log.open("wb") as sink:
        env = clean_env(
            OFFLOAD_REDIS_URL=redis.url, OFFLOAD_QUEUE_NAME="bench-enqueue",
            OFFLOAD_ENV="development", BENCH_CALLS=str(calls),
            POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_SERVICE_NAME="offload-api",
            AWS_DEFAULT_REGION="eu-west-1", AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
        )
        done = subprocess.run(python_command("-m", "bench.enqueue_child", str(out)), cwd=ROOT,
                              env=env, stdout=sink, stderr=subprocess.PIPE, text=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench.enqueue_child exited {done.returncode}:\n"
                               f"{done.stderr[-3000:]}")
    measured = json.loads(out.read_text())
    ms: dict[str, list[float]] = measured["ms"]
    cpu_ms: dict[str, list[float]] = measured["cpu_ms"]
    p50 = {k: percentile(v, 50) for k, v in ms.items()}
    p99 = {k: percentile(v, 99) for k, v in ms.items()}
    rows = [[k, len(v), p50[k], percentile(v, 90), p99[k], ratio(p50[k], p50["bare_enqueue"]),
             ratio(p99[k], p99["bare_enqueue"]), percentile(cpu_ms[k], 50)]
            for k, v in ms.items()]
    r50 = ratio(p50["handler"], p50["bare_enqueue"])
    overhead = p50["handler"] - p50["bare_enqueue"]
    return BenchResult(
        name="enqueue",
        title="4. Enqueue path (warm functions.api invocation vs bare enqueue_unsafe)",
        headers=["candidate", "calls", "p50 ms", "p90 ms", "p99 ms", "p50 x bare", "p99 x bare",
                 "CPU p50 ms"],
        rows=rows,
        goals=[
            Goal(f"handler p50 <= bare enqueue + {P50_OVERHEAD_LIMIT_MS:.1f} ms",
                 f"{p50['handler']:.2f} ms vs {p50['bare_enqueue']:.2f} ms = +{overhead:.2f} ms "
                 f"({r50:.2f}x)", overhead <= P50_OVERHEAD_LIMIT_MS),
            Goal(f"handler p99 <= {P99_LIMIT_MS:.0f} ms", f"{p99['handler']:.2f} ms",
                 p99["handler"] <= P99_LIMIT_MS),
        ],
        notes=["calls rotate between the candidates after 20 warm-up calls each; tracing "
               "off (POWERTOOLS_TRACE_DISABLED), logs and EMF to a file",
               "handler = the sample event as is; handler_idempotency_key adds a fresh "
               "Idempotency-Key header",
               "CPU = the calling thread's CPU time per call (Redis runs in its own process): "
               "less sensitive to a loaded machine than the wall times"],
        data={"ms": {k: summary(v) for k, v in ms.items()},
              "cpu_ms": {k: summary(v) for k, v in cpu_ms.items()}, "raw_ms": ms},
    )
