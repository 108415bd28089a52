"""``functions/s3_events``: S3 ``ObjectCreated`` on the uploads bucket -> image jobs.

Each record under ``uploads/`` becomes one ``process_uploaded_image`` job, owned by the
``{owner}`` segment of its key and named by a deterministic id, so S3 delivering the same
record several times (it delivers at least once) still yields one job. An object that is
too large or not an image is not refused by raising (the retry would refuse it forever):
its job is enqueued with a ``reject_reason`` and records the failed Image. If Redis is down
the invocation fails, so Lambda's async retries and the on-failure destination take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import S3Model, S3RecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from functions import container
from functions.metrics import count
from shared.api_models import IMAGE_CONTENT_TYPES, UploadKey
from shared.errors import Conflict
from shared.queue import JobQueue, deterministic_job_id
from shared.s3 import head_object

SERVICE = "offload-s3-events"
JOB = "process_uploaded_image"

# The upload's S3 request id: the thread from the uploader's PUT through to the worker.
S3_REQUEST_ID = 'Records[0].responseElements."x-amz-request-id"'

tracer = Tracer(service=SERVICE)
logger = Logger(service=SERVICE)


@dataclass(frozen=True)
class ImageJob:
    """One record's job: who owns it, its promised id, and its input."""

    owner: str
    job_id: str
    payload: dict[str, Any]
    correlation_id: str


@logger.inject_lambda_context(correlation_id_path=S3_REQUEST_ID)
@tracer.capture_lambda_handler
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, int]:
    try:
        parsed = parse(event=event, model=S3Model)
    except (ValidationError, InvalidModelTypeError) as exc:
        # Retrying cannot fix the event's shape: log, count and return, so Lambda does
        # not run it twice more and ship it to the failure destination.
        logger.error("rejected an event that is not an S3 notification",
                     extra={"error": str(exc)[:500]})
        count("EventsRejected")
        return {"records": 0, "jobs": 0, "new_jobs": 0, "rejected": 1}
    jobs = [job for record in parsed.Records if (job := _image_job(record)) is not None]
    created = container.run(lambda q: _enqueue_all(q, jobs)) if jobs else 0
    summary = {"records": len(parsed.Records), "jobs": len(jobs), "new_jobs": created}
    logger.info("s3 records handled", extra=summary)
    return summary


def _image_job(record: S3RecordModel) -> ImageJob | None:
    """The job for one record, or None when the record is none of ours."""
    obj = record.s3.object
    if obj is None or not record.eventName.startswith("ObjectCreated"):
        return None
    bucket = record.s3.bucket.name
    key = unquote_plus(obj.key)  # S3 URL-encodes keys in notifications ("+" is a space)
    upload = UploadKey.parse(key)
    if upload is None or bucket != container.settings().uploads_bucket:
        logger.info("ignoring an object not uploaded through POST /uploads",
                    extra={"bucket": bucket, "key": key})
        count("UploadsIgnored")
        return None
    payload: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "version_id": obj.versionId,
        "etag": obj.eTag,
        "size": int(obj.size) if obj.size is not None else None,
    }
    reason = _reject_reason(bucket, key, payload["size"])
    if reason:
        logger.warning("upload rejected", extra={"key": key, "reason": reason})
        count("UploadsRejected")
        payload["reject_reason"] = reason
    request_id = record.responseElements.x_amz_request_id
    return ImageJob(upload.owner, upload.job_id(bucket), payload, request_id)


def _reject_reason(bucket: str, key: str, size: int | None) -> str | None:
    limit = container.settings().upload_max_bytes
    if size is not None and size > limit:
        return f"the object is {size} bytes; the limit is {limit}"
    # The notification carries no content type: S3 has it (the presigned POST bound it).
    info = head_object(container.current().s3, bucket, key)
    if info is None:
        return "the object no longer exists"
    if info.size > limit:
        return f"the object is {info.size} bytes; the limit is {limit}"
    if info.content_type not in IMAGE_CONTENT_TYPES:
        return f"content type {info.content_type!r} is not a supported image type"
    return None


async def _enqueue_all(queue: JobQueue, jobs: list[ImageJob]) -> int:
    created = 0
    for job in jobs:
        created += await _enqueue(queue, job)
    return created


async def _enqueue(queue: JobQueue, job: ImageJob) -> bool:
    try:
        result = await queue.enqueue(
            JOB, job.payload, owner=job.owner, job_id=job.job_id,
            correlation_id=job.correlation_id,
        )
    except Conflict:
        # The promised id already names the first object at this key: this is a second
        # upload to the same key (same signed form, before it expired). Give it its own id.
        version = job.payload["version_id"] or job.payload["etag"] or ""
        retry_id = deterministic_job_id("upload", job.payload["bucket"], job.payload["key"],
                                        version)
        result = await queue.enqueue(
            JOB, job.payload, owner=job.owner, job_id=retry_id,
            correlation_id=job.correlation_id,
        )
    if result.created:
        count("JobsEnqueued", job=JOB, source="s3")
    logger.info("image job", extra={"job_id": result.id, "new_job": result.created})
    return result.created
