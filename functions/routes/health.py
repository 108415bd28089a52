"""``/health``: whether this API can reach Redis (no caller identity needed)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions import container
from functions.routes import responses
from shared.api_models import HealthPublic

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__


@router.get(
    "/health",
    summary="Redis reachable: 200, else 503 with Retry-After (no caller identity needed)",
    responses=responses(200, HealthPublic, "Redis is reachable.", 503),
    tags=["health"],
)
def health() -> HealthPublic:
    container.run(lambda q: q.ping())
    return HealthPublic(status="ok")
