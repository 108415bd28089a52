"""Fault 3: Redis restarts mid-run, keeping its data (an append-only file fsynced on every
write stands in for data that survives; in AWS a failover keeps accepted jobs through the
replica wait, fault 8). While it is down the API answers 503 with Retry-After,
never 500; the API and the worker processes reconnect by themselves within 10 s of its
return; every enqueue that got a 202 runs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.queue import JobQueue, JobView
from tests.faults.figures import record
from tests.faults.servers import PersistentRedis
from tests.integration.procs import WorkerProcess, slow_server
from tests.test_api import SUB, Api, ApiResponse, LambdaContainer

pytestmark = [pytest.mark.slow]

DOWN_SECONDS = 4.0


class Caller(threading.Thread):
    """POSTs a job every 50 ms and remembers every answer with its time."""

    def __init__(self, api: Api, base: str) -> None:
        super().__init__(daemon=True)
        self.api, self.base = api, base
        self.answers: list[tuple[float, ApiResponse]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"url": f"{self.base}/slow/{n}/0"}
            answer = self.api("POST", "/jobs/fetch_external_data", body=body)
            self.answers.append((time.time(), answer))
            time.sleep(0.05)


def test_redis_restart_is_503_meanwhile_and_every_accepted_job_runs(
    settings: Settings, tmp_path: Path, own_redis: PersistentRedis
) -> None:
    config = settings.model_copy(update={"redis_url": own_redis.url,
                                         "worker_idle_timeout_seconds": 3.0})
    workers = [WorkerProcess(config, tmp_path / n) for n in ("a", "b")]
    box = LambdaContainer(config)
    try:
        for w in workers:
            w.wait_ready(config)
        with slow_server() as (base, _handler):
            caller = Caller(Api(box), base)
            caller.start()
            time.sleep(2)
            # WHEN Redis goes away for a few seconds and comes back with its data
            own_redis.stop()
            stopped = time.time()
            time.sleep(DOWN_SECONDS)
            health_down = Api(box)("GET", "/health", sub=None)
            own_redis.start()
            restarted = time.time()
            time.sleep(6)
            caller.stop.set()
            caller.join(10)
            accepted = [a.json["id"] for _, a in caller.answers if a.status == 202]
            views = wait_all_done(box, accepted, timeout=30)
        statuses = Counter(a.status for _, a in caller.answers)
        down = [a for t, a in caller.answers if a.status == 503]
        first_202_after = min(t for t, a in caller.answers if a.status == 202 and t > restarted)
        started_after = [v["started_at"] for v in views.values()
                         if v["started_at"] and v["started_at"] > restarted]
        # THEN only 202 and 503 (with Retry-After) were answered, never a 500
        assert set(statuses) <= {202, 503}, statuses
        assert down, "no request fell in the outage"
        assert all(int(a.headers["Retry-After"]) > 0 for a in down)
        assert health_down.status == 503
        # ... both sides were back within 10 s, and every accepted job ran
        api_recovery = first_202_after - restarted
        worker_recovery = min(started_after) - restarted
        assert api_recovery < 10
        assert worker_recovery < 10
        not_done = {i: v["status"] for i, v in views.items() if v["status"] != "done"}
        assert not not_done, (not_done, workers[0].output()[-3000:])
        assert all(w.proc.poll() is None for w in workers)
        assert "lost Redis" in workers[0].output() + workers[1].output()
        record("fault 3 Redis restart", down_s=round(restarted - stopped, 2),
               answers=dict(statuses), accepted_jobs=len(accepted),
               accepted_jobs_done=len(accepted) - len(not_done),
               api_recovery_s=round(api_recovery, 2),
               worker_recovery_s=round(worker_recovery, 2))
    finally:
        box.close()
        for w in workers:
            w.stop()


async def _view(queue: JobQueue, job_id: str) -> JobView:
    return await queue.view(job_id, SUB)


def wait_all_done(box: LambdaContainer, ids: list[str],
                  timeout: float) -> dict[str, dict[str, Any]]:
    """Each job's status and start time (epoch seconds), once all are done or timed out."""
    deadline = time.monotonic() + timeout
    out: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in ids:
            if out.get(job_id, {}).get("status") == "done":
                continue
            view = box.queue(partial(_view, job_id=job_id))
            out[job_id] = {"status": view.status,
                           "started_at": view.started_at.timestamp() if view.started_at else None}
        if all(v["status"] == "done" for v in out.values()) or time.monotonic() > deadline:
            return out
        time.sleep(0.3)
