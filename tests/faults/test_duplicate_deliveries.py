"""Fault 6: duplicate deliveries. The same S3 record three times, the same
``Idempotency-Key`` twice, the same scheduled event twice: one job each, and each job runs
once on a real worker process (counted from its log)."""

from __future__ import annotations

import io
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from functions import s3_events, scheduler
from shared.config import Settings
from tests.faults.figures import record
from tests.faults.test_redis_restart import wait_all_done
from tests.integration.procs import WorkerProcess, slow_server
from tests.test_api import SUB, Api, LambdaContainer, LambdaContext
from tests.test_s3_events import put
from tests.test_s3_events import record as s3_record
from tests.test_scheduler import scheduled_event

pytestmark = [pytest.mark.slow]


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 60, 20)).save(out, "JPEG")
    return out.getvalue()


def runs(worker: WorkerProcess, name: str, job_id: str) -> int:
    return len(re.findall(rf"job {name} {job_id} try", worker.output()))


def test_each_duplicate_delivery_is_one_job_run_once(settings: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess(settings, tmp_path / "w")
    box = LambdaContainer(settings)
    try:
        worker.wait_ready(settings)
        with slow_server() as (base, handler):
            # GIVEN one upload, one request with an Idempotency-Key, one schedule occurrence
            key = f"uploads/{SUB}/{uuid.uuid4().hex}/photo.jpg"
            obj = put(settings, key, jpeg())
            upload_event = {"Records": [s3_record(settings, key, size=obj["size"],
                                                  etag=obj["eTag"])]}
            api = Api(box)
            headers = {"idempotency-key": "order-7781"}
            body = {"url": f"{base}/slow/idempotent/0"}
            tick: dict[str, Any] = scheduled_event({"job": "cleanup_expired_sessions",
                                                    "args": {"older_than_hours": 12}})
            # WHEN each is delivered more than once
            s3_results = [box.invoke(s3_events.lambda_handler, upload_event, LambdaContext())
                          for _ in range(3)]
            posts = [api("POST", "/jobs/fetch_external_data", body=body, headers=headers)
                     for _ in range(2)]
            ticks = [box.invoke(scheduler.lambda_handler, tick, LambdaContext())
                     for _ in range(2)]
            api_ids = {p.json["id"] for p in posts}
            tick_ids = {t["job_id"] for t in ticks}
            image_ids = {_image_job_id(settings, key)}
            done_user = wait_all_done(box, [*image_ids, *api_ids], timeout=30)
            done_system = wait_system(box, tick_ids)
            time.sleep(1)  # a second run, if any, would have started by now
            hits = dict(handler.hits)
        # THEN one job each ...
        assert [r["new_jobs"] for r in s3_results] == [1, 0, 0]
        assert [p.status for p in posts] == [202, 202] and len(api_ids) == 1
        assert [t["new_job"] for t in ticks] == [True, False] and len(tick_ids) == 1
        assert {v["status"] for v in done_user.values()} == {"done"}
        assert done_system == "done"
        # ... and each ran exactly once
        (image_id,), (api_id,), (tick_id,) = image_ids, api_ids, tick_ids
        counts = {
            "s3_record_x3": runs(worker, "process_uploaded_image", image_id),
            "idempotency_key_x2": runs(worker, "fetch_external_data", api_id),
            "scheduled_event_x2": runs(worker, "cleanup_expired_sessions", tick_id),
        }
        assert counts == {"s3_record_x3": 1, "idempotency_key_x2": 1, "scheduled_event_x2": 1}
        assert hits == {"/slow/idempotent/0": 1}
        record("fault 6 duplicate deliveries", **{f"runs_{k}": v for k, v in counts.items()})
    finally:
        box.close()
        worker.stop()


def _image_job_id(settings: Settings, key: str) -> str:
    from shared.api_models import UploadKey

    upload = UploadKey.parse(key)
    assert upload is not None
    return upload.job_id(settings.uploads_bucket)


def wait_system(box: LambdaContainer, ids: set[str], timeout: float = 20) -> str:
    (job_id,) = ids
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = box.queue(lambda q: q.view(job_id, scheduler.OWNER)).status
        if status == "done":
            break
        time.sleep(0.2)
    return status
