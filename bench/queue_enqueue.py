"""The queue client's own enqueue, side by side with a bare Streaq publish:
``python -m bench.queue_enqueue [CALLS]`` (default 2,000 calls each).

Candidates, in rotation after 50 warm-up calls each, one process, one event loop, a
private Redis: ``JobQueue.enqueue`` of one job, the same with a fresh idempotency key
(the caller-chosen-id path), and ``enqueue_unsafe(...)`` awaited on a connected client.
Prints p50/p99 in ms and each one's ratio to the bare publish, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.stats import percentile, rotations
from infra.local.private_redis import RedisServer
from shared.config import Settings

JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


async def measure(url: str, calls: int) -> dict[str, dict[str, Any]]:
    from shared.queue import JobQueue, make_streaq

    settings = Settings(env="development", redis_url=url,
                        queue_name=f"bench-{uuid.uuid4().hex[:6]}")
    bare = make_streaq(settings, handle_signals=False)
    async with JobQueue(settings) as queue, bare:

        async def job_queue() -> None:
            await queue.enqueue(JOB, PAYLOAD, owner="bench")

        async def job_queue_key() -> None:
            await queue.enqueue(JOB, PAYLOAD, owner="bench", idempotency_key=uuid.uuid4().hex)

        async def bare_publish() -> None:
            await bare.enqueue_unsafe(JOB, **PAYLOAD)

        candidates: dict[str, Callable[[], Awaitable[None]]] = {
            "jobqueue_enqueue": job_queue,
            "jobqueue_enqueue_idempotency_key": job_queue_key,
            "bare_enqueue_unsafe": bare_publish,
        }
        for fn in candidates.values():
            for _ in range(50):
                await fn()
        ms: dict[str, list[float]] = {name: [] for name in candidates}
        for order in rotations(list(candidates), calls):
            for name in order:
                start = time.perf_counter()
                await candidates[name]()
                ms[name].append((time.perf_counter() - start) * 1000)
    bare_p50 = percentile(ms["bare_enqueue_unsafe"], 50)
    bare_p99 = percentile(ms["bare_enqueue_unsafe"], 99)
    return {
        name: {"calls": len(values), "p50_ms": round(percentile(values, 50), 3),
               "p99_ms": round(percentile(values, 99), 3),
               "p50_x_bare": round(percentile(values, 50) / bare_p50, 2),
               "p99_x_bare": round(percentile(values, 99) / bare_p99, 2)}
        for name, values in ms.items()
    }


def main() -> int:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with RedisServer() as redis:
        print(json.dumps(asyncio.run(measure(redis.url, calls)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
