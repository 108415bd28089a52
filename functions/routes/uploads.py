"""``/uploads``: a presigned S3 POST for one image, and the id of the job it will get."""

# No `from __future__ import annotations`: Powertools reads a route's type hints on every
# request, and string annotations would be evaluated each time.

import uuid
from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions import container
from functions.identity import Caller
from functions.routes import COMMON, SERVICE, responses
from shared.api_models import UploadCreate, UploadKey, UploadLinks, UploadPublic
from shared.errors import ValidationFailed
from shared.s3 import presigned_post

logger = Logger(service=SERVICE, child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__


@router.post(
    "/uploads",
    status_code=201,
    summary="Sign an image upload",
    description=(
        "Returns a presigned POST bound to the key `uploads/{caller}/{upload_id}/{filename}`, "
        "the declared content type and at most the declared size (itself at most the "
        "configured limit), valid for a few minutes. Send `fields` then the file as "
        "multipart/form-data to `url`. When the upload lands the image is processed as job "
        "`job_id` (404 until then). Uploading to the same key twice before the signature "
        "expires processes the second object as a new job, whose id also derives from the "
        "object's version/ETag."
    ),
    responses=responses(201, UploadPublic, "The signed upload.", *COMMON, 413, 429),
    tags=["uploads"],
)
def create_upload(
    upload: Annotated[UploadCreate, Body()],
    owner: Caller,
) -> UploadPublic:
    state = container.current()
    limit = state.settings.upload_max_bytes
    if upload.size > limit:
        raise ValidationFailed(
            "the file is too large",
            [{"loc": ["body", "size"], "type": "less_than_equal",
              "msg": f"size must be at most {limit} bytes"}],
        )
    container.run(lambda q: q.admit(owner))  # each upload becomes a job
    key = UploadKey(owner=owner, upload_id=uuid.uuid4().hex, filename=upload.filename)
    bucket = state.settings.uploads_bucket
    post = presigned_post(
        state.s3,
        bucket,
        str(key),
        upload.content_type,
        max_bytes=upload.size,
        expires_seconds=state.settings.upload_url_expiry_seconds,
    )
    job_id = key.job_id(bucket)
    logger.info("upload signed", extra={"upload_id": key.upload_id, "job_id": job_id})
    return UploadPublic(
        upload_id=key.upload_id,
        job_id=job_id,
        key=str(key),
        url=post["url"],
        fields=post["fields"],
        expires_at=post["expires_at"],
        max_bytes=upload.size,
        links=UploadLinks(job=f"/jobs/{job_id}"),
    )
