"""``/jobs``: enqueue a catalogue job, read it (long-poll), abort it, retry a dead letter
(listings: :mod:`functions.routes.listing`). Every job belongs to the caller who enqueued
it; anyone else gets 404."""

# No `from __future__ import annotations`: Powertools reads a route's type hints on every
# request, and string annotations would be evaluated each time.

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import AwareDatetime

from functions import container, outputs
from functions.identity import Caller, CallerProfile, CallerRoles, check_job_role
from functions.metrics import count
from functions.routes import COMMON, SERVICE, responses
from shared.api_models import (
    JOB_ID_PATTERN,
    JobAccepted,
    JobCreate,
    JobErrorPublic,
    JobLinks,
    JobPublic,
    StepPublic,
)
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.job_events import detail, publish_now
from shared.jobs import CATALOGUE
from shared.limits import fair_priority
from shared.queue import EnqueuedJob, JobView
from shared.queue.client import MAX_DELAY_SECONDS

logger = Logger(service=SERVICE, child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__

# Long-polls end before API Gateway's 30 s integration timeout.
MAX_WAIT_SECONDS = 20
MAX_NAME_LENGTH = 64
MAX_PRIORITY_LENGTH = 32
ACCEPTED = 202

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id.")]


_HTTP_JOBS = [spec.name for spec in CATALOGUE.values() if spec.http_enqueueable]


def _enqueueable() -> str:
    lines = [
        f"- `{spec.name}` ({', '.join(spec.input_model.model_fields) or 'no input'}): "
        f"{spec.description}"
        for spec in CATALOGUE.values()
        if spec.http_enqueueable
    ]
    return "\n".join(lines)


@router.post(
    "/jobs/<name>",
    status_code=ACCEPTED,
    summary="Enqueue a job",
    description=(
        "The body is the job's input, validated against its catalogue model (the request "
        "schema lists each job's). Jobs callers may enqueue:\n\n" + _enqueueable()
    ),
    responses=responses(202, JobAccepted, "Enqueued (or the job an Idempotency-Key already made).",
                        *COMMON, 403, 404, 409, 413, 429),
    tags=["jobs"],
)
def create_job(  # noqa: PLR0913, RUF100 - each argument is one documented HTTP parameter
    name: Annotated[str, Path(max_length=MAX_NAME_LENGTH, description="A catalogue job name.",
                              examples=_HTTP_JOBS)],
    body: Annotated[JobCreate, Body()],
    owner: Caller,
    profile: CallerProfile,
    roles: CallerRoles,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="The same key from the same caller within 24 h returns the same job.",
        ),
    ] = None,
    delay_seconds: Annotated[
        int | None, Query(ge=0, le=MAX_DELAY_SECONDS, description="Run after this delay.")
    ] = None,
    run_at: Annotated[AwareDatetime | None, Query(description="Run at this time.")] = None,
    priority: Annotated[str | None, Query(max_length=MAX_PRIORITY_LENGTH)] = None,
    replay_of: Annotated[
        str | None,
        Query(pattern=JOB_ID_PATTERN,
              description="One of your jobs this one replays (the console's replay): linked "
                          "from the new job as `replay_of`; 404 when it is not yours."),
    ] = None,
) -> JobAccepted:
    spec = CATALOGUE.get(name)
    if spec is None:
        raise NotFound(f"unknown job {name!r}")
    if not spec.http_enqueueable:
        raise Forbidden(f"job {name!r} cannot be enqueued over HTTP")
    check_job_role(spec, roles)
    _check_schedule(delay_seconds, run_at, priority)
    unfinished = container.run(lambda q: q.admit(owner))
    priority = fair_priority(container.settings(), unfinished, priority)
    queued_at = datetime.now(UTC)  # before the enqueue: a worker may start the job at once
    job = container.run(
        lambda q: q.enqueue(
            name,
            body.root,
            owner=owner,
            idempotency_key=idempotency_key,
            delay_seconds=delay_seconds,
            run_at=run_at,
            priority=priority,
            correlation_id=logger.get_correlation_id(),
            profile=profile,
            replay_of=replay_of,
        )
    )
    if job.created:
        count("JobsEnqueued", job=name, source="api")
        _publish(detail(job.id, name, owner, "queued", at=queued_at))
    logger.info("job enqueued", extra={"job_id": job.id, "job": name, "new_job": job.created})
    return _accepted(job)


def _check_schedule(delay: int | None, run_at: datetime | None, priority: str | None) -> None:
    problems = []
    if delay is not None and run_at is not None:
        problems.append({"loc": ["query", "run_at"], "type": "conflict",
                         "msg": "give delay_seconds or run_at, not both"})
    if run_at is not None and (run_at - datetime.now(UTC)).total_seconds() > MAX_DELAY_SECONDS:
        problems.append({"loc": ["query", "run_at"], "type": "less_than_equal",
                         "msg": f"run_at must be at most {MAX_DELAY_SECONDS // 86400} days "
                                f"ahead, like delay_seconds"})
    allowed = container.settings().priorities
    if priority is not None and priority not in allowed:
        problems.append({"loc": ["query", "priority"], "type": "literal_error",
                         "msg": f"priority must be one of {', '.join(allowed)}"})
    if problems:
        raise ValidationFailed("the request is invalid", problems)


@router.get(
    "/jobs/<job_id>",
    summary="Read a job (optionally long-poll until it finishes or reports progress)",
    description="Includes a presigned download URL for each file in the result (owner "
    "only, signed at read time) and the job's last reported progress.",
    responses=responses(200, JobPublic, "The job.", *COMMON, 404, 429),
    tags=["jobs"],
)
def read_job(
    job_id: JobId,
    owner: Caller,
    wait: Annotated[
        int,
        Query(ge=0, le=MAX_WAIT_SECONDS,
              description="Seconds to wait for the job to finish (capped by configuration)."),
    ] = 0,
    wait_for: Annotated[
        Literal["finish", "progress"],
        Query(description="With `wait`: return when the job finishes (`finish`), or also "
                          "when it reports new progress (`progress`)."),
    ] = "finish",
) -> JobPublic:
    timeout = min(wait, container.settings().api_max_wait_seconds)
    lease = container.run(lambda q: q.lease_long_poll(owner, timeout)) if timeout else None
    try:
        view, progress = container.run(
            lambda q: outputs.follow(q, job_id, owner, timeout, wait_for))
    finally:
        if lease is not None:
            container.run(lambda q: q.release_long_poll(owner, lease))
    steps = container.run(lambda q: q.step_views(view, owner)) if view.steps else []
    return _public(view).model_copy(update={
        "downloads": outputs.downloads(view, owner),
        "progress": outputs.progress_public(progress),
        "steps": [_step(name, step) for name, step in steps],
    })


@router.delete(
    "/jobs/<job_id>",
    summary="Abort a queued, scheduled or running job",
    description="409 when it already finished. A queued job is marked and never runs; "
    "`status` reads `aborted` once a worker (or the scheduler) confirmed.",
    responses=responses(200, JobPublic, "The job after the abort request.", *COMMON, 404, 409),
    tags=["jobs"],
)
def abort_job(job_id: JobId, owner: Caller) -> JobPublic:
    view = container.run(lambda q: q.abort(job_id, owner))
    if view.status == "aborted":
        _publish(detail(job_id, view.name, owner, "aborted", tries=view.tries))
    logger.info("job abort requested", extra={"job_id": job_id, "status": view.status})
    return _public(view)


@router.post(
    "/jobs/<job_id>/retry",
    status_code=202,
    summary="Enqueue a dead letter again, as a new job",
    responses=responses(202, JobAccepted, "The new job.", *COMMON, 404, 429),
    tags=["jobs"],
)
def retry_job(job_id: JobId, owner: Caller) -> JobAccepted:
    container.run(lambda q: q.admit(owner))
    job = container.run(
        lambda q: q.retry_dead_letter(job_id, owner, correlation_id=logger.get_correlation_id())
    )
    count("JobsEnqueued", job=job.name, source="retry")
    return _accepted(job)


def _links(job_id: str) -> JobLinks:
    return JobLinks(self=f"/jobs/{job_id}")


def _accepted(job: EnqueuedJob) -> JobAccepted:
    return JobAccepted(id=job.id, name=job.name, status=job.status, links=_links(job.id))


def _publish(event: dict[str, Any]) -> None:
    sink = container.current().events
    if sink is not None:
        publish_now(sink, event)


def _step(name: str, view: JobView) -> StepPublic:
    error = f"{view.error['type']}: {view.error['message']}" if view.error else None
    return StepPublic(name=name, job_id=view.id, status=view.status, tries=view.tries,
                      error=error)


def _public(view: JobView) -> JobPublic:
    return JobPublic(
        id=view.id,
        name=view.name,
        status=view.status,
        tries=view.tries,
        enqueued_at=view.enqueued_at,
        scheduled_for=view.scheduled_for,
        started_at=view.started_at,
        finished_at=view.finished_at,
        result=view.result,
        error=JobErrorPublic(**view.error) if view.error else None,
        steps=[],
        input=view.input,
        replay_of=view.replay_of,
        links=_links(view.id),
    )

