"""No secret (the signing secret, the Redis AUTH password, a caller's bearer token, a
password-reset token) appears in any log: the API's, a worker process's, or
``offload worker-health``'s, captured while the secrets are used on good paths and on the
error paths most likely to print them (Redis refusing connections, a job failing for good).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.config import Settings
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.servers import PersistentRedis
from tests.integration.procs import WorkerProcess, settings_env
from tests.test_api import SUB, Api, LambdaContainer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SIGNING_SECRET = "sign-Zq8vN3kLw1Xy7Rt5Pm2Hd9Fj4Gb6Cs0A"
REDIS_PASSWORD = "redis-Kx4Mn8Qp2Vz6Wb1Jt9Lr3Ys7Hd5Gf0"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldC14eXo"
RESET_TOKEN = "reset-Vb7Nm3Qw9Er5Ty1Ui8Op4As6Df2Gh0"
SECRETS = {"signing secret": SIGNING_SECRET, "Redis password": REDIS_PASSWORD,
           "bearer token": BEARER, "reset token": RESET_TOKEN}


def health(settings: Settings, state_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "offload.cli", "worker-health", "--state-dir", str(state_dir)],
        env=settings_env(settings), capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def record_text(r: logging.LogRecord) -> str:
    extra = " ".join(f"{k}={v!r}" for k, v in vars(r).items())
    return f"{r.getMessage()} {extra} {r.exc_text or ''}"


async def test_no_secret_reaches_any_log(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    server = PersistentRedis(password=REDIS_PASSWORD)
    server.start()
    config = settings.model_copy(update={
        "redis_url": server.url, "signing_secret": SecretStr(SIGNING_SECRET),
        "worker_redis_check_seconds": 1.0, "redis_socket_timeout_seconds": 2.0,
    })
    worker = WorkerProcess(config, tmp_path / "w", "--verbose")
    box = LambdaContainer(config)
    health_output: list[str] = []
    try:
        worker.wait_ready(config)
        api = Api(box)
        auth = {"authorization": f"Bearer {BEARER}"}
        # Good paths and refusals through the API, with the bearer token on every request
        job = api("POST", "/jobs/generate_sales_report", headers=auth,
                  body={"start_date": "2026-11-01", "end_date": "2026-11-02"})
        assert job.status == 202, job.text
        api("GET", f"/jobs/{job.json['id']}", headers=auth)
        api("POST", "/jobs/generate_sales_report", headers=auth, body={"start_date": "x"})
        api("GET", "/jobs/" + "0" * 32, headers=auth)
        # A job carrying a reset token, failing for good (no such user) into dead letters
        async with JobQueue(config) as queue:
            reset = await queue.enqueue("send_password_reset",
                                        {"user_id": "0" * 24, "token": RESET_TOKEN},
                                        owner=SUB)
            failed = await queue.wait(reset.id, SUB, timeout=15)
        assert failed.status == "failed"
        health_output.append(health(config, worker.state_dir))
        # Redis refusing connections: the API's 503, the worker's reconnects, the health check
        server.stop()
        down = api("POST", "/jobs/generate_sales_report", headers=auth,
                   body={"start_date": "2026-11-01", "end_date": "2026-11-02"})
        assert down.status == 503
        time.sleep(3)
        health_output.append(health(config, worker.state_dir))
        server.start()
        worker.wait_ready(config)
    finally:
        box.close()
        worker.stop()
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    logs = {
        "worker process": worker.log.read_text(errors="replace"),
        "worker-health": "\n".join(health_output),
        "API and test process (log records)": "\n".join(record_text(r) for r in caplog.records),
        "stdout/stderr": "\n".join(capfd.readouterr()),
    }
    assert "lost Redis" in logs["worker process"]
    # worker-health reads the worker processes' heartbeats, no service: Redis down or up
    assert logs["worker-health"].count("1 worker(s) healthy") == 2, logs["worker-health"]
    leaks = [f"{what} in {where}" for where, text in logs.items()
             for what, secret in SECRETS.items() if secret in text]
    assert not leaks, leaks
    record("security no secrets in logs", secrets_checked=len(SECRETS), log_sources=len(logs),
           log_bytes=sum(len(t) for t in logs.values()), leaks=len(leaks))
