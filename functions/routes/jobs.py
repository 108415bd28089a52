"""``/jobs``: enqueue a catalogue job, read it (long-poll), abort it, list and retry dead
letters. Every job belongs to the caller who enqueued it; anyone else gets 404."""

# No `from __future__ import annotations` here: Powertools reads a route's type hints on
# every request (to find its Depends), and string annotations cost an eval each time
# (a warm POST /jobs took 1.8 ms instead of 0.4 ms before the enqueue; bench/README.md).

import json
import re
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from functions import _runtime as runtime
from functions.routes import COMMON, SERVICE, responses
from shared.api_models import (
    JOB_ID_PATTERN,
    DeadLetterLinks,
    DeadLetterPage,
    DeadLetterPublic,
    JobAccepted,
    JobCreate,
    JobErrorPublic,
    JobLinks,
    JobPublic,
)
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.jobs import CATALOGUE
from shared.queue import DeadLetter, EnqueuedJob, JobView

logger = Logger(service=SERVICE, child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__

# Long-polls end before API Gateway's 30 s integration timeout.
MAX_WAIT_SECONDS = 20
MAX_DELAY_SECONDS = 30 * 24 * 3600
MAX_NAME_LENGTH = 64
MAX_PRIORITY_LENGTH = 32
ACCEPTED = 202

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id.")]
Caller = Annotated[str, Depends(runtime.caller)]


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
                        *COMMON, 403, 404, 409, 413),
    tags=["jobs"],
)
def create_job(
    name: Annotated[str, Path(max_length=MAX_NAME_LENGTH, description="A catalogue job name.",
                              examples=_HTTP_JOBS)],
    body: Annotated[JobCreate, Body()],
    owner: Caller,
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
) -> JobAccepted:
    spec = CATALOGUE.get(name)
    if spec is None:
        raise NotFound(f"unknown job {name!r}")
    if not spec.http_enqueueable:
        raise Forbidden(f"job {name!r} cannot be enqueued over HTTP")
    _check_schedule(delay_seconds, run_at, priority)
    job = runtime.run(
        lambda q: q.enqueue(
            name,
            body.root,
            owner=owner,
            idempotency_key=idempotency_key,
            delay_seconds=delay_seconds,
            run_at=run_at,
            priority=priority,
            correlation_id=logger.get_correlation_id(),
        )
    )
    if job.created:
        runtime.count("JobsEnqueued", job=name, source="api")
    logger.info("job enqueued", extra={"job_id": job.id, "job": name, "new_job": job.created})
    return _accepted(job)


# --- POST /jobs/{name} without the router ------------------------------------------------
#
# Powertools spends ~0.2 ms of CPU per request in a tight loop, 0.5-0.6 ms in the warm
# handler on this 2-core host, matching the route, validating each parameter through its
# OpenAPI models, resolving Depends and serialising: half the enqueue's own round trip.
# The handler therefore calls ``create_job`` directly for requests this function can prove
# pass that validation, with the arguments Powertools would pass; anything else (every 4xx
# Powertools produces before the route runs, and every unusual shape) returns None and
# takes the router. What ``create_job`` raises goes through the app's own exception
# handlers either way (functions/api.py), and tests/test_api_fast_path.py proves both
# paths answer byte for byte the same.

# Catalogue names are snake_case; Powertools' own segment pattern is a superset.
_PLAIN_JOB_PATH = re.compile(rf"/jobs/([a-z0-9_]{{1,{MAX_NAME_LENGTH}}})")
# The header's pattern (^[\x21-\x7e]+$), less ",": Powertools splits header values on commas.
_PLAIN_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,255}")
_PLAIN_DELAY = re.compile(r"0|[1-9][0-9]{0,9}")


@cache
def _run_at_adapter() -> TypeAdapter[datetime]:
    # Built on first use: a query parameter few requests carry should not cost cold start.
    return TypeAdapter(AwareDatetime)


def plain_create_job(event: dict[str, Any]) -> dict[str, Any] | None:
    """``create_job``'s keyword arguments when ``event`` (an HTTP API v2.0 request whose
    body ``unreadable_body`` accepted) is a ``POST /jobs/{name}`` that passes the route's
    request validation and carries a caller identity; None when in any doubt."""
    context = event["requestContext"]
    match = _PLAIN_JOB_PATH.fullmatch(event["rawPath"])
    if match is None or context["http"]["method"] != "POST" or context.get("stage") != "$default":
        return None
    headers = {} if event.get("headers") is None else event["headers"]
    query = event.get("queryStringParameters") or {}
    if not (_plain_strings(headers, lowercase=True) and _plain_strings(query, lowercase=False)
            and _plain_cookies(event.get("cookies"))):
        return None
    owner = _plain_owner(context)
    payload = _plain_payload(event, headers.get("content-type", ""))
    key = headers.get("idempotency-key")
    if owner is None or payload is None or (
            key is not None and not _PLAIN_IDEMPOTENCY_KEY.fullmatch(key)):
        return None
    schedule = _plain_schedule(query)
    if schedule is None:
        return None
    return {"name": match.group(1), "body": JobCreate.model_validate(payload), "owner": owner,
            "idempotency_key": key, **schedule}


def _plain_strings(fields: Any, *, lowercase: bool) -> bool:
    # Powertools splits every value (a non-string one raises) and folds header names.
    if not isinstance(fields, dict):
        return False
    try:
        names = "".join(fields)
        "".join(fields.values())
    except TypeError:
        return False
    return not lowercase or names == names.lower()


def _plain_cookies(cookies: Any) -> bool:
    # Powertools joins them to parse cookie parameters, whether the route has any or not.
    return not cookies or (isinstance(cookies, list) and all(isinstance(c, str) for c in cookies))


def _plain_owner(context: dict[str, Any]) -> str | None:
    """``runtime.caller``'s answer, or None where it would refuse (401)."""
    authorizer = context.get("authorizer")
    jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
    claims = jwt.get("claims") if isinstance(jwt, dict) else None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and runtime.is_owner(sub) else None


def _plain_payload(event: dict[str, Any], content_type: str) -> dict[str, Any] | None:
    """The JSON object body Powertools would parse (no form, multipart or base64 bodies)."""
    content_type = content_type.strip()
    body = event.get("body")
    if content_type and not content_type.startswith("application/json"):
        return None
    if event.get("isBase64Encoded") or not isinstance(body, str) or not body:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _plain_schedule(query: dict[str, str]) -> dict[str, Any] | None:
    """``delay_seconds``, ``run_at`` and ``priority`` as the Query models would parse them
    (``create_job`` itself checks their combination and the priority's name)."""
    delay, run_at, priority = (query.get(k) for k in ("delay_seconds", "run_at", "priority"))
    schedule: dict[str, Any] = {"delay_seconds": None, "run_at": None, "priority": priority}
    if delay is not None:
        if not _PLAIN_DELAY.fullmatch(delay) or int(delay) > MAX_DELAY_SECONDS:
            return None
        schedule["delay_seconds"] = int(delay)
    if run_at is not None:
        if "," in run_at:
            return None
        try:
            schedule["run_at"] = _run_at_adapter().validate_python(run_at)
        except ValidationError:
            return None
    if priority is not None and ("," in priority or len(priority) > MAX_PRIORITY_LENGTH):
        return None
    return schedule


def _check_schedule(delay: int | None, run_at: datetime | None, priority: str | None) -> None:
    problems = []
    if delay is not None and run_at is not None:
        problems.append({"loc": ["query", "run_at"], "type": "conflict",
                         "msg": "give delay_seconds or run_at, not both"})
    allowed = runtime.settings().priorities
    if priority is not None and priority not in allowed:
        problems.append({"loc": ["query", "priority"], "type": "literal_error",
                         "msg": f"priority must be one of {', '.join(allowed)}"})
    if problems:
        raise ValidationFailed("the request is invalid", problems)


@router.get(
    "/jobs/<job_id>",
    summary="Read a job (optionally long-poll until it finishes)",
    responses=responses(200, JobPublic, "The job.", *COMMON, 404),
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
) -> JobPublic:
    timeout = min(wait, runtime.settings().api_max_wait_seconds)
    return _public(runtime.run(lambda q: q.wait(job_id, owner, timeout)))


@router.delete(
    "/jobs/<job_id>",
    summary="Abort a queued, scheduled or running job",
    description="409 when it already finished. A queued job is marked and never runs; "
    "`status` reads `aborted` once a worker (or the scheduler) confirmed.",
    responses=responses(200, JobPublic, "The job after the abort request.", *COMMON, 404, 409),
    tags=["jobs"],
)
def abort_job(job_id: JobId, owner: Caller) -> JobPublic:
    view = runtime.run(lambda q: q.abort(job_id, owner))
    logger.info("job abort requested", extra={"job_id": job_id, "status": view.status})
    return _public(view)


@router.get(
    "/jobs",
    summary="The caller's dead letters (jobs that failed for good)",
    responses=responses(200, DeadLetterPage, "Newest first.", *COMMON),
    tags=["jobs"],
)
def list_failed(
    owner: Caller,
    status: Annotated[Literal["failed"], Query(description="Only `failed` is listed.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeadLetterPage:
    letters = runtime.run(lambda q: q.dead_letters(owner, limit))
    return DeadLetterPage(items=[_dead_letter(letter) for letter in letters])


@router.post(
    "/jobs/<job_id>/retry",
    status_code=202,
    summary="Enqueue a dead letter again, as a new job",
    responses=responses(202, JobAccepted, "The new job.", *COMMON, 404),
    tags=["jobs"],
)
def retry_job(job_id: JobId, owner: Caller) -> JobAccepted:
    job = runtime.run(
        lambda q: q.retry_dead_letter(job_id, owner, correlation_id=logger.get_correlation_id())
    )
    runtime.count("JobsEnqueued", job=job.name, source="retry")
    return _accepted(job)


def _links(job_id: str) -> JobLinks:
    return JobLinks(self=f"/jobs/{job_id}")


def _accepted(job: EnqueuedJob) -> JobAccepted:
    return JobAccepted(id=job.id, name=job.name, status=job.status, links=_links(job.id))


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
        steps=list(view.steps),
        links=_links(view.id),
    )


def _dead_letter(letter: DeadLetter) -> DeadLetterPublic:
    return DeadLetterPublic(
        id=letter.id,
        name=letter.name,
        payload=letter.payload,
        error_type=letter.error_type,
        error=letter.error,
        tries=letter.tries,
        failed_at=letter.failed_at,
        links=DeadLetterLinks(self=f"/jobs/{letter.id}", retry=f"/jobs/{letter.id}/retry"),
    )
