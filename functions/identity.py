"""Who is calling: the JWT authorizer's ``sub`` claim (and e-mail/name claims), as route
dependencies."""

# No `from __future__ import annotations`: Powertools reads a dependency's type hints on
# every request, and string annotations would be evaluated each time.

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends, Request

from functions import container
from shared.api_models import OWNER_RE
from shared.errors import Forbidden, Unauthorized
from shared.jobs import ADMIN, PROFILE_CLAIMS, RESERVED_OWNERS, JobSpec

_MAX_CLAIM = 320  # the longest valid e-mail address; a longer claim (of either kind) is dropped


def is_owner(sub: str) -> bool:
    """Whether ``sub`` is a caller id this API accepts (it becomes an S3 key segment)."""
    return OWNER_RE.match(sub) is not None


def caller(request: Request) -> str:
    """The caller's id: ``requestContext.authorizer.jwt.claims.sub`` (401 when unusable)."""
    event = request.resolved_event
    claims = event.request_context.authorizer.jwt_claim  # type: ignore[attr-defined]
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the request carries no caller identity (JWT claim 'sub')")
    if not is_owner(sub):
        raise Unauthorized("the caller identity (JWT claim 'sub') has an unsupported format")
    if sub in RESERVED_OWNERS:
        raise Unauthorized(f"the caller identity (JWT claim 'sub') {sub!r} is reserved")
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


MAX_ROLES = 50


def roles_from(claims: dict[str, object], claim: str) -> tuple[str, ...]:
    """The roles in ``claim``: a JSON list, API Gateway HTTP API's stringified array
    (``"[admin ops]"``), or a space- or comma-separated string (``scope``)."""
    value = claims.get(claim)
    if isinstance(value, list):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        items = text.replace(",", " ").split()
    else:
        items = []
    return tuple(sorted({i for i in items if 0 < len(i) <= _MAX_CLAIM}))[:MAX_ROLES]


def caller_roles(request: Request) -> tuple[str, ...]:
    """The caller's roles, from the configured claim (``OFFLOAD_ROLES_CLAIM``)."""
    claims = request.resolved_event.request_context.authorizer.jwt_claim  # type: ignore[attr-defined]
    if not isinstance(claims, dict):
        return ()
    return roles_from(claims, container.settings().roles_claim)


# A route parameter that is the caller's roles.
CallerRoles = Annotated[tuple[str, ...], Depends(caller_roles)]


def role_name(role: str) -> str:
    """A catalogue role as this deployment names it (``admin`` -> ``OFFLOAD_ADMIN_ROLE``)."""
    return container.settings().admin_role if role == ADMIN else role


def require_role(roles: tuple[str, ...], role: str, what: str) -> None:
    """403 naming the role when the caller lacks it."""
    name = role_name(role)
    if name not in roles:
        raise Forbidden(f"{what} needs the '{name}' role; your token's "
                        f"'{container.settings().roles_claim}' claim does not grant it")


def check_job_role(spec: JobSpec, roles: tuple[str, ...]) -> None:
    if spec.required_role is not None:
        require_role(roles, spec.required_role, f"job {spec.name!r}")
