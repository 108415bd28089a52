"""Fault 4: Redis goes silent (the connection stops answering without closing: a TCP proxy
in front of the private server stops forwarding). The worker notices within 60 s and
recovers without a restart of its process; ``offload worker-health`` keeps reporting the
process healthy meanwhile (it is: its event loop runs and it reconnects by itself).
A deployment of a similar scaffold hung for 11 hours like this."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.jobs import enqueue_fetches, wait_finished
from tests.faults.servers import PersistentRedis, SilentProxy
from tests.integration.procs import WorkerProcess, settings_env, slow_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SILENT_SECONDS = 8.0


@pytest.fixture
def proxy(own_redis: PersistentRedis) -> Iterator[SilentProxy]:
    box = SilentProxy(own_redis.port)
    yield box
    box.close()


def health(settings: Settings, state_dir: Path) -> tuple[bool, str]:
    """``offload worker-health`` as the container runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "offload.cli", "worker-health", "--state-dir", str(state_dir)],
        env=settings_env(settings), capture_output=True, text=True, timeout=20,
    )
    return done.returncode == 0, done.stdout.strip()


async def test_silent_redis_is_noticed_and_survived_in_place(
    settings: Settings, tmp_path: Path, own_redis: PersistentRedis, proxy: SilentProxy
) -> None:
    direct = settings.model_copy(update={
        "redis_url": own_redis.url, "worker_idle_timeout_seconds": 3.0,
        "worker_redis_check_seconds": 1.0, "redis_socket_timeout_seconds": 2.0,
        "worker_grace_period_seconds": 2,
    })
    through_proxy = direct.model_copy(update={"redis_url": proxy.url})
    worker = WorkerProcess(through_proxy, tmp_path / "w")
    try:
        worker.wait_ready(through_proxy)
        pid = worker.proc.pid
        with slow_server() as (base, _handler):
            async with JobQueue(direct) as queue:
                before = await wait_finished(
                    queue, await enqueue_fetches(queue, [f"{base}/slow/before/0"], "q"), "q", 10)
                # WHEN every connection through the proxy goes silent, new ones included
                proxy.go_silent()
                silenced = time.monotonic()
                job = await enqueue_fetches(queue, [f"{base}/slow/during/0"], "q")
                unhealthy: list[str] = []
                checks = 0
                while time.monotonic() - silenced < SILENT_SECONDS:
                    ok, message = health(direct, worker.state_dir)
                    checks += 1
                    if not ok:
                        unhealthy.append(message)
                    time.sleep(0.5)
                # ... and after a while new connections work again (the old stay dead)
                proxy.heal()
                healed = time.monotonic()
                (during,) = await wait_finished(queue, job, "q", 60)
                recovered = time.monotonic()
        healthy_again, _ = health(direct, worker.state_dir)
        output = worker.output()
        # THEN the worker noticed, the same process served the job once Redis answered
        # again, and its health check stayed healthy meanwhile (it reports the process and
        # its event loop, not Redis: a cache failover must not fail every container)
        assert [v.status for v in before] == ["done"]
        assert unhealthy == [], unhealthy
        assert "lost Redis (no answer to PING" in output, output[-3000:]
        assert during.status == "done", output[-3000:]
        assert worker.proc.poll() is None and worker.proc.pid == pid
        assert recovered - silenced < 60
        assert healthy_again
        record("fault 4 silent Redis", silent_s=SILENT_SECONDS, ping_every_s=1.0,
               ping_timeout_s=2.0, health_checks_while_silent=checks,
               unhealthy_checks=len(unhealthy),
               job_done_after_silence_s=round(recovered - silenced, 2),
               job_done_after_heal_s=round(recovered - healed, 2), process_restarts=0)
    finally:
        worker.stop()
