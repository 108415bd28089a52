"""``GET /jobs`` (the caller's jobs, newest first, filtered and paged), ``GET /dead-letters``
and ``GET /jobs/{id}/downloads/{name}`` (302 to a presigned download)."""

# No `from __future__ import annotations`: Powertools reads a route's type hints on every
# request, and string annotations would be evaluated each time.

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import AwareDatetime

from functions import container, outputs
from functions.identity import Caller
from functions.routes import COMMON, responses
from functions.routes.jobs import JobId
from shared.api_models import (
    DeadLetterLinks,
    DeadLetterPage,
    DeadLetterPublic,
    ErrorBody,
    JobListStatus,
    JobSummary,
    JobSummaryPage,
)
from shared.errors import NotFound, ValidationFailed
from shared.queue import DeadLetter, JobView
from shared.queue.listing import BadCursor, JobFilter

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__

MAX_CURSOR_LENGTH = 200
MAX_FILE_NAME_LENGTH = 128


@router.get(
    "/jobs",
    summary="The caller's jobs, newest first",
    description="Filter by `status`, job `name` and creation time; page with `limit` and "
    "the previous page's `next`. Jobs are listed while their results are kept.",
    responses=responses(200, JobSummaryPage, "A page of jobs.", *COMMON),
    tags=["jobs"],
)
def list_jobs(  # noqa: PLR0913, RUF100 - each argument is one documented HTTP parameter
    owner: Caller,
    status: Annotated[JobListStatus | None, Query(
        description="Only jobs in this state (`succeeded` = `done`).")] = None,
    name: Annotated[str | None, Query(max_length=64, description="Only this job.")] = None,
    created_after: Annotated[AwareDatetime | None, Query(
        description="Only jobs created after this time (ISO 8601 with offset).")] = None,
    created_before: Annotated[AwareDatetime | None, Query(
        description="Only jobs created before this time (ISO 8601 with offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    next: Annotated[str | None, Query(
        max_length=MAX_CURSOR_LENGTH, description="The `next` of the previous page.")] = None,
) -> JobSummaryPage:
    where = JobFilter(status=status, name=name, created_after=created_after,
                      created_before=created_before)
    try:
        page = container.run(lambda q: q.list_jobs(owner, where, limit, next))
    except BadCursor as exc:
        raise ValidationFailed("the request is invalid", [
            {"loc": ["query", "next"], "type": "value_error", "msg": str(exc)}]) from exc
    return JobSummaryPage(items=[_summary(view) for view in page.items], next=page.next)


@router.get(
    "/dead-letters",
    summary="The caller's dead letters (jobs that failed for good), to retry",
    description="Each can be enqueued again with `POST /jobs/{id}/retry`.",
    responses=responses(200, DeadLetterPage, "Newest first.", *COMMON),
    tags=["jobs"],
)
def list_dead_letters(
    owner: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeadLetterPage:
    letters = container.run(lambda q: q.dead_letters(owner, limit))
    return DeadLetterPage(items=[_dead_letter(letter) for letter in letters])


@router.get(
    "/jobs/<job_id>/downloads/<file_name>",
    summary="Download a file of a job's result",
    description="302 to a presigned S3 GET of the file, valid for a few minutes.",
    responses={
        302: {"description": "Redirect to the presigned download URL (`Location`)."},
        **{code: doc for code, doc in responses(200, ErrorBody, "", *COMMON, 404).items()
           if code != 200},
    },
    tags=["jobs"],
)
def download(
    job_id: JobId,
    file_name: Annotated[str, Path(max_length=MAX_FILE_NAME_LENGTH,
                                   description="A `downloads[].name` of the job.")],
    owner: Caller,
) -> Response[str]:
    view = container.run(lambda q: q.view(job_id, owner))
    for ref in outputs.owned_files(view, owner):
        if ref.name == file_name:
            url = outputs.sign(ref).url
            return Response(status_code=302, headers={"Location": url}, body="")
    raise NotFound(f"job {job_id} has no file {file_name!r}")


def _summary(view: JobView) -> JobSummary:
    error = f"{view.error['type']}: {view.error['message']}" if view.error else None
    return JobSummary(id=view.id, name=view.name, status=view.status, tries=view.tries,
                      created_at=view.enqueued_at, started_at=view.started_at,
                      finished_at=view.finished_at, error=error[:300] if error else None)


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
