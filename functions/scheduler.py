"""``functions/scheduler``: EventBridge schedules -> catalogue jobs.

A schedule's target input names the job and its arguments::

    {"job": "send_daily_digest", "args": {}}

either as the whole event (the SAM ``Schedule`` event's ``Input``) or as the ``detail`` of
an EventBridge event. An unknown job or bad arguments cannot get better by retrying: they
are logged as errors, counted (``ScheduleRejected``) and not enqueued. Redis being down
fails the invocation, so Lambda retries it; the job id derives from the event id (or the
invocation's request id, which Lambda's own retries keep), so a retry never enqueues twice.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions import container
from functions.errors import field_errors
from functions.metrics import count
from shared.jobs import CATALOGUE
from shared.queue import deterministic_job_id

SERVICE = "offload-scheduler"
OWNER = "system"

tracer = Tracer(service=SERVICE)
logger = Logger(service=SERVICE)


class ScheduledJob(BaseModel):
    """What a schedule asks for: a catalogue job and its arguments."""

    model_config = ConfigDict(extra="forbid")

    job: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class ScheduledJobEvent(EventBridgeModel):
    """An EventBridge event carrying a :class:`ScheduledJob` as its detail. ``version`` may
    be absent: SAM CLI's ``generate-event cloudwatch scheduled-event`` sample has none."""

    version: str = "0"
    detail: ScheduledJob


# The event id of an EventBridge event; a schedule's plain input has none, so the handler
# sets the invocation's request id instead.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request, occurrence = _read(event, context)
    except ValidationError as exc:
        return _reject("invalid_event", "the event names no job", field_errors(
            exc.errors(include_url=False)))
    logger.set_correlation_id(occurrence)
    spec = CATALOGUE.get(request.job)
    if spec is None:
        return _reject("unknown_job", f"no job {request.job!r} in the catalogue")
    try:
        spec.validate(request.args)
    except ValidationError as exc:
        return _reject("invalid_arguments", f"bad arguments for {spec.name}",
                       field_errors(exc.errors(include_url=False), ("args",)))
    job = container.run(
        lambda q: q.enqueue(
            spec.name,
            request.args,
            owner=OWNER,
            job_id=deterministic_job_id("schedule", spec.name, occurrence),
            correlation_id=occurrence,
        )
    )
    if job.created:
        count("JobsEnqueued", job=spec.name, source="schedule")
    logger.info("scheduled job enqueued", extra={"job": spec.name, "job_id": job.id,
                                                  "new_job": job.created})
    return {"enqueued": True, "job": spec.name, "job_id": job.id, "new_job": job.created}


def _read(event: dict[str, Any], context: LambdaContext) -> tuple[ScheduledJob, str]:
    """The request and an id for this occurrence of the schedule."""
    if isinstance(event, dict) and "detail-type" in event:
        envelope = parse(event, model=ScheduledJobEvent)
        return envelope.detail, envelope.id
    return parse(event, model=ScheduledJob), context.aws_request_id


def _reject(reason: str, message: str, details: Any = None) -> dict[str, Any]:
    logger.error("schedule rejected", extra={"reason": reason, "error": message,
                                             "details": details})
    count("ScheduleRejected", reason=reason)
    return {"enqueued": False, "reason": reason, "error": message}
