"""``/admin/overview``: queue depth per priority, running jobs, live workers and the
schedules, for callers with the admin role (the console's Operations page)."""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions import container
from functions.identity import Caller, CallerRoles, require_role
from functions.routes import COMMON, responses
from shared.api_models import AdminOverview, PriorityDepth, ScheduleInfo
from shared.jobs import ADMIN
from shared.schedules import ScheduleExpressionError, parse_schedule

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__


def next_run(expression: str, now: datetime) -> datetime | None:
    """When a cron schedule fires next; None for rates (their origin is the rule's creation)."""
    try:
        schedule = parse_schedule(expression)
    except ScheduleExpressionError:
        return None
    return None if schedule.period is not None else schedule.next_after(now, now)


@router.get(
    "/admin/overview",
    summary="Queue depth per priority, running jobs, live workers, schedules (admin role)",
    responses=responses(200, AdminOverview, "The queue now.", *COMMON, 403),
    tags=["admin"],
)
def overview(owner: Caller, roles: CallerRoles) -> AdminOverview:
    # ``owner``: a caller identity comes first (401 without one), then the role (403).
    require_role(roles, ADMIN, f"the operations overview (caller {owner})")
    depth = container.run(lambda q: q.queued_by_priority())
    stats = container.run(lambda q: q.stats())
    now = datetime.now(UTC)
    return AdminOverview(
        queues=[PriorityDepth(priority=p, queued=n) for p, n in depth.items()],
        scheduled=stats.scheduled + stats.due_scheduled,
        running=stats.running,
        oldest_waiting_seconds=round(stats.oldest_age_seconds, 1),
        workers_alive=stats.workers,
        schedules=[ScheduleInfo(name=name, expression=expr, next_run=next_run(expr, now))
                   for name, expr in sorted(container.settings().schedules.items())],
    )
