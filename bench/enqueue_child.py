"""The enqueue benchmark's process: ``python -m bench.enqueue_child OUT.json``.

It plays one warm Lambda container of ``functions.api`` (one thread, one persistent event
loop, the Redis connection kept between invocations) and, on the same thread, a bare
Streaq client with its own persistent loop. Calls rotate between them; each call's
latency (wall, and this thread's CPU time) is measured around the call itself. The
handler's log lines and EMF metrics go to stdout, as in Lambda (the parent sends them to a
file).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import rotations
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[1]
EVENT = ROOT / "tests" / "events" / "apigw-http-v2-post-job.json"
JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


@dataclass
class LambdaContext:
    """The attributes of the Lambda runtime's context object that Powertools reads."""

    function_name: str = "offload-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:offload-api"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/offload-api"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def api_event(template: dict[str, Any], idempotency_key: bool) -> dict[str, Any]:
    """The sample POST /jobs/generate_sales_report event with a fresh request id and,
    when asked, a fresh Idempotency-Key (so each call creates a job: the key's check runs,
    and passes)."""
    event: dict[str, Any] = json.loads(json.dumps(template))
    if idempotency_key:
        event["headers"]["idempotency-key"] = uuid.uuid4().hex
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    event["body"] = json.dumps(PAYLOAD)
    return event


def main(out: str) -> int:
    from functions import container
    from functions.api import lambda_handler
    from shared.queue import make_streaq

    settings = Settings()
    calls = int(os.environ.get("BENCH_CALLS", "1000"))
    template = json.loads(EVENT.read_text())
    container.configure(settings)

    bare = make_streaq(settings, handle_signals=False)
    runner = asyncio.Runner()

    async def open_bare() -> None:
        await bare.__aenter__()

    async def enqueue_bare() -> None:
        task = bare.enqueue_unsafe(JOB, **PAYLOAD)
        await task

    def call_handler(idempotency_key: bool = False) -> None:
        answer = lambda_handler(api_event(template, idempotency_key), LambdaContext())
        if answer["statusCode"] != 202:
            raise RuntimeError(f"handler answered {answer['statusCode']}: {answer['body']}")

    def call_bare() -> None:
        runner.run(enqueue_bare())

    runner.run(open_bare())
    candidates: dict[str, Callable[[], None]] = {
        "handler": call_handler,
        "handler_idempotency_key": lambda: call_handler(idempotency_key=True),
        "bare_enqueue": call_bare,
    }
    for fn in candidates.values():  # warm: the first calls connect and fill caches
        for _ in range(20):
            fn()
    latencies: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for order in rotations(list(candidates), calls):
        for name in order:
            start, start_cpu = time.perf_counter(), time.thread_time()
            candidates[name]()
            latencies[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.thread_time() - start_cpu) * 1000)
    Path(out).write_text(json.dumps({"ms": latencies, "cpu_ms": cpu}))
    container.configure(None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
