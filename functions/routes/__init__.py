"""The API's routes, one ``Router`` per resource; ``functions.api`` joins them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.api_models import ErrorBody

SERVICE = "offload-api"
JSON = "application/json"


def responses(status: int, model: type[BaseModel], description: str,
              *errors: int) -> dict[int, Any]:
    """OpenAPI ``responses``: the success body, and the error statuses with the one error
    body (Powertools documents only these once a route names any)."""
    documented: dict[int, Any] = {
        status: {"description": description, "content": {JSON: {"model": model}}}
    }
    for error in errors:
        documented[error] = {
            "description": _DESCRIPTIONS[error],
            "content": {JSON: {"model": ErrorBody}},
        }
    return documented


_DESCRIPTIONS = {
    401: "No caller identity (JWT `sub` claim).",
    403: "Not allowed: an internal job, or the caller lacks the role it needs.",
    404: "Unknown, or belongs to another caller.",
    409: "Conflicts with the current state (or another use of the Idempotency-Key).",
    413: "The body is over the configured limit.",
    415: "The body is not JSON.",
    422: "Invalid body or parameters; `details` lists each field error.",
    429: "An owner quota is spent (enqueue rate, unfinished jobs or long-polls); "
         "`Retry-After`, `RateLimit-Policy` and `RateLimit` say which and when.",
    503: "Redis is unreachable, or no cache replica confirmed an enqueued job in time "
         "(`durability_unconfirmed`, its id in `details.job_id`: the same Idempotency-Key "
         "is safe to send again); retry after `Retry-After` seconds.",
}

# Every route that reads Redis may answer these.
COMMON = (401, 415, 422, 503)
