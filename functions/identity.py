"""Who is calling: the JWT authorizer's ``sub`` claim (and e-mail/name claims), as route
dependencies."""

# No `from __future__ import annotations`: Powertools reads a dependency's type hints on
# every request, and string annotations would be evaluated each time.

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Request

from shared.api_models import OWNER_PATTERN
from shared.errors import Unauthorized
from shared.jobs import PROFILE_CLAIMS

_OWNER = re.compile(OWNER_PATTERN)
_MAX_CLAIM = 320  # the longest valid e-mail address; a longer claim (of either kind) is dropped


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


def caller_profile(request: Request) -> dict[str, str]:
    """The caller's e-mail and name claims (those present and short enough), which the
    worker uses to create the caller's User on first use."""
    claims = request.resolved_event.request_context.authorizer.jwt_claim  # type: ignore[attr-defined]
    if not isinstance(claims, dict):
        return {}
    return {claim: value for claim in PROFILE_CLAIMS
            if isinstance(value := claims.get(claim), str) and 0 < len(value) <= _MAX_CLAIM}


# A route parameter that is the caller's profile claims.
CallerProfile = Annotated[dict[str, str], Depends(caller_profile)]
