"""Job payloads are signed (``signing_secret``): a task written to Redis by someone
without the secret is refused by the worker, never decoded. Offload's wire format is JSON,
but the forgery here is a pickle, the most dangerous bytes an attacker could plant.

The forged payload is a pickle whose unpickling would create a file (``open(path, "w")``
as its reduce callable): the file not existing afterwards proves the bytes were not
unpickled. It is written under Streaq's task key with a wrong signature (and once with
none) and XADDed to the stream, as an attacker with Redis write access would."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared.config import Settings
from shared.queue import JobQueue
from shared.queue.wire import JobFailure
from tests.faults.figures import record
from tests.faults.jobs import enqueue_fetches, wait_finished
from tests.integration.procs import WorkerProcess, slow_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a visible side effect."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def forged_task(path: Path, signature: str) -> bytes:
    """Streaq's task record (``f`` the function, ``a``/``kw`` its arguments, ``t`` the
    enqueue time) carrying the side effect, signed with ``signature``."""
    body = pickle.dumps({"f": "fetch_external_data", "a": (), "kw": {"x": CreatesFile(path)},
                         "t": int(time.time() * 1000)})
    if signature == "wrong":
        return body + hmac.digest(b"not-the-signing-secret", body, "sha256")
    if signature == "truncated":
        return body[:-1] + hashlib.sha256(body).digest()
    return body  # no signature at all


async def plant(queue: JobQueue, task_id: str, raw: bytes) -> None:
    streaq = queue.streaq
    await queue.redis.set(streaq.task_key + task_id, raw)
    await queue.redis.xadd(streaq.stream_key + "normal",
                           {"task_id": task_id, "enqueue_time": str(int(time.time() * 1000))})


async def outcome(queue: JobQueue, task_id: str, timeout: float = 10) -> tuple[bool, str]:
    """(success, error) of the task as the worker stored it."""
    with anyio.fail_after(timeout):
        result = await queue.streaq.result_by_id(task_id, timeout=timedelta(seconds=timeout))
    if result.success:
        return True, ""
    failure = JobFailure.from_exception(result.exception)
    return False, f"{failure.type_name}: {failure.message}"


@pytest.mark.parametrize("signature", ["wrong", "missing", "truncated"])
async def test_a_task_forged_without_the_secret_is_refused_not_unpickled(
    settings: Settings, tmp_path: Path, signature: str
) -> None:
    marker = tmp_path / "unpickled.txt"
    raw = forged_task(marker, signature)
    # Sanity: these bytes do create the file when unpickled (by this test, never the worker).
    probe = tmp_path / "probe.txt"
    pickle.loads(forged_task(probe, "missing"))
    assert probe.exists()
    worker = WorkerProcess(settings, tmp_path / "w")
    try:
        worker.wait_ready(settings)
        with slow_server() as (base, _handler):
            async with JobQueue(settings) as queue:
                # WHEN a forged task is planted in Redis and announced on the stream
                task_id = uuid.uuid4().hex
                await plant(queue, task_id, raw)
                success, error_type = await outcome(queue, task_id)
                # ... and a genuine job follows it
                genuine = await wait_finished(
                    queue, await enqueue_fetches(queue, [f"{base}/slow/after/0"], "s"), "s", 15)
        # THEN the worker refused it without unpickling it, and kept working
        assert not marker.exists()
        assert (success, error_type) == (False, "StreaqError: Invalid signature for task data!")
        assert f"task ☒ {task_id} failed to deserialize" in worker.output()
        assert [v.status for v in genuine] == ["done"]
        record(f"security forged payload ({signature} signature)", refused=not success,
               side_effect_ran=marker.exists(), worker_kept_serving=True)
    finally:
        worker.stop()
