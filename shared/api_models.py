"""The HTTP API's bodies, named by role, and the upload-key contract.

``...Create`` is what a caller sends, ``...Public`` what the API answers, ``ErrorBody`` the
one error shape every status shares. ``UploadKey`` is the S3 key layout both the API (which
signs an upload for it) and the S3 handler (which enqueues the image job) derive ids from.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from shared.errors import PermanentJobError
from shared.jobs import CATALOGUE
from shared.queue import deterministic_job_id

# What process_uploaded_image can open (worker/imaging.py's ALLOWED_FORMATS, as MIME types).
# HEIC is what iPhones save by default; browsers label it image/heic or image/heif.
ImageContentType = Literal[
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff",
    "image/avif", "image/heic", "image/heif",
]
IMAGE_CONTENT_TYPES: frozenset[str] = frozenset(get_args(ImageContentType))

JobStatus = Literal["queued", "scheduled", "running", "done", "failed", "aborted", "expired"]

# A caller id becomes an S3 key segment: no "/", nothing S3 or a shell would mangle; the
# characters real IdPs put in `sub` (Auth0 "auth0|…", Entra ID "_", "user:…", e-mails).
_OWNER_CHARS = r"[A-Za-z0-9][A-Za-z0-9._@|:+_-]{0,127}"
# For pydantic (Rust regex: "$" is the end of the text, a trailing newline never matches).
OWNER_PATTERN = rf"^{_OWNER_CHARS}$"
# For Python's re, where "$" also matches before a trailing newline: \A and \Z instead.
OWNER_RE = re.compile(rf"\A{_OWNER_CHARS}\Z")

# uuid4 hex, plus "-N" for the steps of a pipeline.
JOB_ID_PATTERN = r"^[0-9a-f]{32}(-[0-9]{1,2})?$"
# POST /uploads mints uuid4 hex; any short alphanumeric id (a ULID, say) parses too.
_UPLOAD_ID = re.compile(r"^[0-9A-Za-z]{6,64}$")


class PublicModel(BaseModel):
    """Base of response bodies: unknown fields are a bug, not something to pass on."""

    model_config = ConfigDict(extra="forbid")


# --- errors --------------------------------------------------------------------------


# The inside of every error response.
class ErrorPublic(PublicModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_found`.")
    message: str
    details: Any = Field(default=None, description="Field errors for 422, else context.")


# Every non-2xx body: {"error": {"code", "message", "details"}}.
class ErrorBody(PublicModel):
    error: ErrorPublic


# One entry of a 422's details.
class FieldError(PublicModel):
    loc: list[str | int]
    type: str
    msg: str


# --- jobs ----------------------------------------------------------------------------


def _job_inputs_schema(schema: dict[str, Any]) -> None:
    # Built when the OpenAPI document is, not at import: documents every job a caller may
    # enqueue over HTTP (the route itself validates against the one its path names).
    schema["anyOf"] = [
        {**spec.input_model.model_json_schema(), "title": spec.name}
        for spec in CATALOGUE.values()
        if spec.http_enqueueable
    ]


# What a caller posts to create a job: the input of the job named in the path.
class JobCreate(RootModel[dict[str, Any]]):
    model_config = ConfigDict(json_schema_extra=_job_inputs_schema)


# Where a job can be read (and aborted, with DELETE).
class JobLinks(PublicModel):
    self: str


# 202 to POST /jobs/{name} and POST /jobs/{id}/retry.
class JobAccepted(PublicModel):
    id: str
    name: str
    status: JobStatus
    links: JobLinks


# Why a job failed: the exception's type and message.
class JobErrorPublic(PublicModel):
    type: str
    message: str


# How far a running job got, as the job last reported it.
class ProgressPublic(PublicModel):
    fraction: float = Field(ge=0, le=1, description="0 to 1.")
    message: str = Field(description="What the job is doing.")
    updated_at: datetime


# A file the job wrote, with a short-lived presigned download URL (made at read time).
class DownloadPublic(PublicModel):
    name: str = Field(description="Also `GET /jobs/{id}/downloads/{name}` (302 to `url`).")
    url: str = Field(description="Presigned S3 GET, valid until `expires_at`.")
    expires_at: datetime
    content_type: str
    bytes: int


# One step of a pipeline, in a pipeline job's view.
class StepPublic(PublicModel):
    name: str
    job_id: str
    status: JobStatus
    tries: int
    error: str | None = None


# GET /jobs/{id}: everything a caller may know about one of their jobs.
class JobPublic(PublicModel):
    id: str
    name: str
    status: JobStatus = Field(
        description="`expired`: finished longer ago than the result retention."
    )
    tries: int
    enqueued_at: datetime | None = None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = Field(default=None, description="The job's return value, when done.")
    error: JobErrorPublic | None = None
    steps: list[StepPublic] = Field(
        default_factory=list,
        description="A pipeline's steps in order (the last one's id is the job's own), each "
                    "with its status, tries and error.")
    input: dict[str, Any] | None = Field(default=None, description="The job's input, as enqueued.")
    replay_of: str | None = Field(default=None,
                                  description="The job this one replays with an edited input.")
    links: JobLinks
    downloads: list[DownloadPublic] = Field(
        default_factory=list, description="The files in the result, each with a download URL.")
    progress: ProgressPublic | None = Field(
        default=None, description="The job's last reported progress, if it reported any.")


# Links of a dead letter: the failed job, and how to enqueue it again.
class DeadLetterLinks(PublicModel):
    self: str
    retry: str


# One job that failed for good.
class DeadLetterPublic(PublicModel):
    id: str
    name: str
    payload: dict[str, Any]
    error_type: str
    error: str
    tries: int
    failed_at: datetime
    links: DeadLetterLinks


# GET /dead-letters: the caller's dead letters, newest first.
class DeadLetterPage(PublicModel):
    items: list[DeadLetterPublic]


# What GET /jobs?status= filters on: a job state; `succeeded` is a finished job's `done`.
JobListStatus = Literal["queued", "scheduled", "running", "succeeded", "done", "failed",
                        "aborted"]


# One job in GET /jobs.
class JobSummary(PublicModel):
    id: str
    name: str
    status: JobStatus
    tries: int
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = Field(default=None, description="`Type: message`, when it failed.")


# GET /jobs: a page of the caller's jobs, newest first.
class JobSummaryPage(PublicModel):
    items: list[JobSummary]
    next: str | None = Field(description="Pass as `next` for the following page; null at "
                                         "the end. A page may be short and still have one.")


# --- uploads -------------------------------------------------------------------------


# POST /uploads: the file the caller is about to upload.
class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=200)
    content_type: ImageContentType
    size: int = Field(ge=1, description="Bytes; at most the configured upload limit.")

    @field_validator("filename")
    @classmethod
    def _one_plain_segment(cls, name: str) -> str:
        if name in {".", ".."} or any(c in name for c in "/\\") or not name.isprintable():
            raise ValueError("filename must be one printable path segment without / or \\")
        if name != name.strip():
            raise ValueError("filename must not start or end with whitespace")
        if "${" in name:
            # S3 would replace "${filename}" in a POST key with a name the uploader picks.
            raise ValueError("filename must not contain '${'")
        return name


# Links of an upload: the job the uploaded image will get (404 until the upload lands).
class UploadLinks(PublicModel):
    job: str


# 201 to POST /uploads: a browser-style presigned POST and the ids it leads to.
class UploadPublic(PublicModel):
    upload_id: str
    job_id: str
    key: str
    url: str
    fields: dict[str, str] = Field(description="Form fields to send before the file.")
    expires_at: str = Field(description="When the signature expires (ISO 8601, UTC).")
    max_bytes: int
    links: UploadLinks


class InvalidUploadKey(PermanentJobError, ValueError):
    """An S3 key ``POST /uploads`` did not make: a job given one fails at once, not retried."""


class UploadKey(BaseModel):
    """``uploads/{owner}/{upload_id}/{filename}``: who uploaded what, readable from S3 alone."""

    model_config = ConfigDict(frozen=True)

    owner: str = Field(pattern=OWNER_PATTERN)
    upload_id: str = Field(pattern=_UPLOAD_ID.pattern)
    filename: str

    def __str__(self) -> str:
        return f"uploads/{self.owner}/{self.upload_id}/{self.filename}"

    @classmethod
    def parse(cls, key: str) -> UploadKey | None:
        """The parts of a decoded key, or None when it was not made by ``POST /uploads``."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "uploads":
            return None
        _, owner, upload_id, filename = parts
        if not (OWNER_RE.match(owner) and _UPLOAD_ID.match(upload_id) and filename):
            return None
        return cls(owner=owner, upload_id=upload_id, filename=filename)

    @classmethod
    def require(cls, key: str) -> UploadKey:
        """The parts of a decoded key; :class:`InvalidUploadKey` (saying which key and what
        shape was expected) when it was not made by ``POST /uploads``."""
        upload = cls.parse(key)
        if upload is None:
            raise InvalidUploadKey(
                f"key {key!r:.200} is not uploads/{{owner}}/{{upload_id}}/{{filename}} as "
                f"POST /uploads makes it"
            )
        return upload

    def variant_key(self, name: str) -> str:
        """Where the ``name`` variant of this upload goes in the results bucket (a bucket
        that does not trigger the S3 handler again)."""
        return f"images/{self.owner}/{self.upload_id}/{name}.webp"

    def job_id(self, bucket: str) -> str:
        """The image job's id. Bucket and key alone: the API promises it before the upload
        exists, when neither ETag nor version id is known (the upload id keeps it unique)."""
        return deterministic_job_id("upload", bucket, str(self))


# --- health --------------------------------------------------------------------------


# GET /health: the API can reach Redis.
class HealthPublic(PublicModel):
    status: Literal["ok"]


# --- operations (admin) ----------------------------------------------------------------


class PriorityDepth(PublicModel):
    priority: str
    queued: int = Field(description="Jobs waiting in this priority (counted up to 1001).")


class ScheduleInfo(PublicModel):
    name: str
    expression: str
    next_run: datetime | None = Field(
        default=None, description="The next cron fire time (UTC); null for rate() schedules, "
                                  "which count from when their rule was created.")


# GET /admin/overview: the queue and its workers, for the admin role.
class AdminOverview(PublicModel):
    queues: list[PriorityDepth]
    scheduled: int
    running: int
    oldest_waiting_seconds: float
    workers_alive: int
    schedules: list[ScheduleInfo]


# --- webhooks ----------------------------------------------------------------------------

WebhookEvent = Literal["queued", "started", "succeeded", "failed", "aborted"]


# POST /webhooks: where to deliver which of the caller's job events.
class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2048, description="http(s) URL on an allowed host.")
    events: list[WebhookEvent] = Field(min_length=1, max_length=5)


class WebhookPublic(PublicModel):
    id: str
    url: str
    events: list[str]
    created_at: str


# 201 to POST /webhooks: the only time the signing secret is shown.
class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Verifies the Offload-Signature header; shown once.")


class WebhookPage(PublicModel):
    items: list[WebhookPublic]
