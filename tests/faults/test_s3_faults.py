"""Fault 5: S3 faults during an image job. Throttling (503 SlowDown from a proxy in front of
moto) is retried with backoff, by boto3 and then by the job's retry policy, and the job
succeeds; a missing object fails for good at once, with its reason."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from shared.aws import s3_client
from shared.config import Settings
from shared.queue import JobQueue
from tests.faults.figures import record
from tests.faults.jobs import wait_finished
from tests.faults.servers import FlakyS3
from tests.integration.procs import WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

OWNER = "s3-fault-owner"
# boto3 makes 4 attempts per call (shared/aws.py): 6 refusals fail the job's first try
# and two attempts of its second.
REFUSALS = 6


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (30, 120, 200)).save(out, "JPEG")
    return out.getvalue()


async def test_throttled_s3_is_retried_and_a_missing_object_fails_for_good(
    settings: Settings, tmp_path: Path
) -> None:
    key = f"uploads/{OWNER}/upload0001/photo.jpg"
    s3_client(settings).put_object(Bucket=settings.uploads_bucket, Key=key, Body=jpeg(),
                                   ContentType="image/jpeg")
    assert settings.aws_endpoint_url
    flaky = FlakyS3(settings.aws_endpoint_url, match=f"/{key}", failures=REFUSALS)
    through_proxy = settings.model_copy(update={"aws_endpoint_url": flaky.url})
    worker = WorkerProcess(through_proxy, tmp_path / "w")
    try:
        worker.wait_ready(through_proxy)
        async with JobQueue(settings) as queue:
            # GIVEN S3 throttles the first reads of an upload
            started = time.monotonic()
            throttled = await queue.enqueue(
                "process_uploaded_image", {"bucket": settings.uploads_bucket, "key": key},
                owner=OWNER)
            missing = await queue.enqueue(
                "process_uploaded_image",
                {"bucket": settings.uploads_bucket, "key": f"uploads/{OWNER}/upload0002/gone.jpg"},
                owner=OWNER)
            # WHEN the worker runs both jobs
            (done,) = await wait_finished(queue, [throttled.id], OWNER, 60)
            elapsed = time.monotonic() - started
            (gone,) = await wait_finished(queue, [missing.id], OWNER, 20)
            letters = {d.id: d for d in await queue.dead_letters(OWNER)}
        # THEN the throttled one succeeded on a later try, after every refusal was served
        assert done.status == "done", worker.output()[-3000:]
        assert done.tries == 2
        assert flaky.refused == REFUSALS
        assert "S3Unavailable" in worker.output() and "retry 2 in" in worker.output()
        assert set(done.result["variants"]) == {"thumbnail", "large"}
        # ... and the missing object failed at once, for good, saying why
        assert gone.status == "failed" and gone.tries == 1
        assert gone.error is not None and "no longer exists" in gone.error["message"]
        assert letters[missing.id].error_type == "PermanentJobError"
        assert throttled.id not in letters
        record("fault 5 S3 faults", slowdown_answers=REFUSALS, job_tries=done.tries,
               throttled_job_s=round(elapsed, 2), missing_object_tries=gone.tries,
               missing_object_reason=gone.error["message"])
    finally:
        worker.stop()
        flaky.close()
