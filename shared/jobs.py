"""The job catalogue: every job's name, input model and options, in one place.

The API validates requests against it, the scheduler and the S3 handler enqueue from it,
and the worker registers one task per entry under the same name (a test proves the sets
match). Input models are named ``<Job>Input``; they are what crosses the queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

_OBJECT_ID = r"^[0-9a-fA-F]{24}$"


class JobInput(BaseModel):
    """Base of every job input: unknown fields are refused, values are not coerced oddly."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoInput(JobInput):
    """A job that takes no arguments."""


# Input of send_welcome_email: nothing; the job greets the caller's own user (the job's owner).
class WelcomeEmailInput(JobInput):
    """The caller's own user is greeted: no user id crosses the API."""


# Input of send_password_reset: the user and the reset token minted by the caller.
class PasswordResetInput(JobInput):
    user_id: str = Field(pattern=_OBJECT_ID)
    token: str = Field(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_\-]+$")


# Input of generate_sales_report: an inclusive date range of at most a year.
class SalesReportInput(JobInput):
    start_date: date
    end_date: date
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _ordered(self) -> SalesReportInput:
        if self.end_date < self.start_date:
            raise ValueError("end_date must not be before start_date")
        if (self.end_date - self.start_date).days > 366:
            raise ValueError("the range may span at most 366 days")
        return self


# Input of process_uploaded_image: the uploaded object (key already URL-decoded).
class ProcessImageInput(JobInput):
    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    version_id: str | None = None
    etag: str | None = None
    size: int | None = Field(default=None, ge=0)
    # Set by the S3 handler when it refuses the object (too large, not an image): the job
    # then only records the failed Image, since Lambdas never open MongoDB.
    reject_reason: str | None = Field(default=None, max_length=500)

    @field_validator("key")
    @classmethod
    def _under_uploads(cls, key: str) -> str:
        if not key.startswith("uploads/") or ".." in key.split("/"):
            raise ValueError("key must lie under uploads/")
        return key


# Input of fetch_external_data: an http(s) URL on an allow-listed host.
class FetchExternalInput(JobInput):
    url: HttpUrl


# Input of cleanup_expired_sessions and sweep_pending_blobs: how far back to look.
class DeliverWebhookInput(JobInput):
    webhook_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    event: dict[str, Any]


class SweepInput(JobInput):
    older_than_hours: int = Field(default=24, ge=1, le=24 * 365)


# Input of the order pipeline and its first step: the order is the caller's own (the job's
# owner's user), so no user id crosses the API.
class OrderInput(JobInput):
    amount_cents: int = Field(gt=0, le=100_000_000)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")


# What validate_order hands on to process_order (the caller's user, resolved by the worker),
# and process_order to notify_order.
class ValidatedOrderInput(OrderInput):
    user_id: str = Field(pattern=_OBJECT_ID)
    validated: bool


class ProcessedOrderInput(JobInput):
    order_id: str = Field(pattern=_OBJECT_ID)
    user_id: str = Field(pattern=_OBJECT_ID)
    reference: str


@dataclass(frozen=True)
class JobSpec:
    """One catalogue entry.

    ``steps`` is set for pipelines: the entry is not a task of its own but a chain of
    catalogue tasks, each receiving the previous one's result (Streaq dependencies, so no
    step holds a worker slot waiting for another).
    """

    name: str
    input_model: type[JobInput]
    description: str
    timeout_seconds: int = 60
    max_tries: int = 3
    result_ttl_seconds: int | None = None  # None: the configured result retention
    priority: str = "normal"
    http_enqueueable: bool = False
    steps: tuple[str, ...] = field(default=())
    # A role the caller needs to enqueue it over HTTP (ADMIN: the configured admin role).
    required_role: str | None = None
    # At most this many of this job running per owner (like Trigger.dev's concurrencyKey);
    # None: the owner's overall limit (OFFLOAD_OWNER_CONCURRENCY) applies.
    concurrency_per_owner: int | None = None

    @property
    def is_pipeline(self) -> bool:
        return bool(self.steps)

    def validate(self, payload: Any) -> JobInput:
        """Validate a payload (raises pydantic.ValidationError)."""
        return self.input_model.model_validate(payload)


# The owner of jobs no caller enqueued (schedules, S3 events); no token may claim it.
SYSTEM_OWNER = "system"
RESERVED_OWNERS: frozenset[str] = frozenset({SYSTEM_OWNER})

# The deployment's admin role (``OFFLOAD_ADMIN_ROLE``), as a catalogue entry names it.
ADMIN = "admin"

_NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")

CATALOGUE: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "send_welcome_email",
            WelcomeEmailInput,
            "E-mail a welcome message to a user.",
            timeout_seconds=30,
            max_tries=5,
            http_enqueueable=True,
        ),
        JobSpec(
            "send_password_reset",
            PasswordResetInput,
            "E-mail a password-reset link (internal: tokens are minted server-side).",
            timeout_seconds=30,
            max_tries=5,
            priority="high",
        ),
        JobSpec(
            "send_daily_digest",
            NoInput,
            "E-mail every user a digest of yesterday's orders, in batches.",
            timeout_seconds=900,
            max_tries=2,
            priority="low",
        ),
        JobSpec(
            "generate_sales_report",
            SalesReportInput,
            "Totals per currency and day over a date range, as CSV and PDF in S3.",
            timeout_seconds=300,
            http_enqueueable=True,
            required_role=ADMIN,  # company-wide sales
        ),
        JobSpec(
            "process_uploaded_image",
            ProcessImageInput,
            "A 256 px thumbnail and a web-sized WebP of an uploaded image.",
            timeout_seconds=120,
            max_tries=4,
        ),
        JobSpec(
            "cleanup_expired_sessions",
            SweepInput,
            "Delete sessions past their expiry, in one delete_many.",
            timeout_seconds=300,
            max_tries=2,
            priority="low",
        ),
        JobSpec(
            "sweep_pending_blobs",
            SweepInput,
            "Mark blobs stuck in 'pending' as errored and delete their partial objects.",
            timeout_seconds=300,
            max_tries=2,
            priority="low",
        ),
        JobSpec(
            "fetch_external_data",
            FetchExternalInput,
            "Fetch a document from an allow-listed host and store it as a blob.",
            timeout_seconds=60,
            max_tries=4,
            http_enqueueable=True,
        ),
        JobSpec(
            "deliver_webhook",
            DeliverWebhookInput,
            "POST one job event to one of its owner's webhooks, signed (internal).",
            timeout_seconds=15,
            max_tries=5,
        ),
        JobSpec(
            "validate_order",
            OrderInput,
            "Pipeline step 1: check the order against its user.",
            timeout_seconds=30,
        ),
        JobSpec(
            "process_order",
            ValidatedOrderInput,
            "Pipeline step 2: record the order (idempotent on its reference).",
            timeout_seconds=30,
        ),
        JobSpec(
            "notify_order",
            ProcessedOrderInput,
            "Pipeline step 3: e-mail the order confirmation.",
            timeout_seconds=30,
            max_tries=5,
        ),
        JobSpec(
            "place_order",
            OrderInput,
            "Pipeline: validate_order | process_order | notify_order.",
            http_enqueueable=True,
            steps=("validate_order", "process_order", "notify_order"),
        ),
    )
}



def _add_team_jobs(catalogue: dict[str, JobSpec]) -> None:
    """Add the entries of ``shared/catalogue/``: one module per job a team added
    (``offload new-job``), each with a module-level ``SPEC``. Imported here so the API,
    the scheduler and the worker all see the same catalogue with no other edit."""
    import importlib
    import pkgutil

    import shared.catalogue as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{module.__name__} must define SPEC = JobSpec(...)")
        if spec.name in catalogue:
            raise ValueError(f"job {spec.name!r} ({module.__name__}) is already in the catalogue")
        catalogue[spec.name] = spec


_add_team_jobs(CATALOGUE)

for _spec in CATALOGUE.values():
    assert _NAME.match(_spec.name), _spec.name
    assert all(step in CATALOGUE and not CATALOGUE[step].steps for step in _spec.steps)

TASK_NAMES: frozenset[str] = frozenset(n for n, s in CATALOGUE.items() if not s.is_pipeline)


# The keyword argument that carries a job's context (owner, correlation id, and the caller's
# e-mail and name claims when the token had them) in its queue
# message, beside the input: the worker reads it from the message it already has, instead of
# reading the job's metadata from Redis on every run. The policy middleware removes it
# before the job sees its arguments. Input models refuse unknown fields, and no field
# starts with an underscore, so it cannot collide with an input.
CONTEXT_KWARG = "_offload"


# The context entry holding when the job could first start (epoch ms, as a string: every
# context value is one): the worker's QueueWait metric. Only a job's first task carries it.
READY_KWARG = "ready_ms"


# The identity claims a job's context may carry beside the owner: what the worker needs to
# create the caller's User on first use (Lambdas never open MongoDB).
PROFILE_CLAIMS: tuple[str, ...] = ("email", "name")


def job_context(owner: str, correlation_id: str | None,
                profile: dict[str, str] | None = None,
                ready_ms: int | None = None) -> dict[str, dict[str, str]]:
    """The keyword argument to enqueue beside a job's input (see :data:`CONTEXT_KWARG`).
    ``profile`` holds the caller's :data:`PROFILE_CLAIMS` (others are dropped, empty ones
    left out); ``ready_ms``, when the job may first start (:data:`READY_KWARG`)."""
    context = {"owner": owner, "correlation_id": correlation_id or ""}
    if ready_ms is not None:
        context[READY_KWARG] = str(ready_ms)
    for claim in PROFILE_CLAIMS:
        value = (profile or {}).get(claim)
        if value:
            context[claim] = value
    return {CONTEXT_KWARG: context}
