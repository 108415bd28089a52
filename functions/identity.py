"""Who is calling: the JWT authorizer's ``sub`` claim, as a route dependency."""

# No `from __future__ import annotations`: Powertools reads a dependency's type hints on
# every request, and string annotations would be evaluated each time.

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Request

from shared.api_models import OWNER_PATTERN
from shared.errors import Unauthorized

_OWNER = re.compile(OWNER_PATTERN)


def is_owner(sub: str) -> bool:
    """Whether ``sub`` is a caller id this API accepts (it becomes an S3 key segment)."""
    return _OWNER.match(sub) is not None


def caller(request: Request) -> str:
    """The caller's id: ``requestContext.authorizer.jwt.claims.sub`` (401 when unusable)."""
    event = request.resolved_event
    claims = event.request_context.authorizer.jwt_claim  # type: ignore[attr-defined]
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the request carries no caller identity (JWT claim 'sub')")
    if not is_owner(sub):
        raise Unauthorized("the caller identity (JWT claim 'sub') has an unsupported format")
    return sub


# A route parameter that is the caller's id.
Caller = Annotated[str, Depends(caller)]
