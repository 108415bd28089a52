"""EventBridge schedule expressions, evaluated locally: when does a schedule fire next.

``rate(5 minutes)`` fires every period from when the rule was created (here: the stack's
start); ``cron(0 6 * * ? *)`` uses EventBridge's six fields (minutes hours day-of-month
month day-of-week year, day-of-week 1-7 = SUN-SAT, one of the two day fields ``?``),
evaluated in UTC unless the schedule names a time zone (EventBridge Scheduler).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleExpressionError(ValueError):
    """An expression EventBridge would refuse, or one this evaluator does not support."""


@dataclass(frozen=True)
class Schedule:
    """A parsed expression; :meth:`next_after` gives the first fire time after a moment."""

    expression: str
    period: timedelta | None = None
    cron: Any = None  # crontab.CronTab
    zone: ZoneInfo | None = None

    def next_after(self, moment: datetime, origin: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (UTC); rates count from ``origin``."""
        if self.period is not None:
            elapsed = (moment - origin) // self.period
            return origin + self.period * (elapsed + 1)
        local = moment.astimezone(self.zone or UTC)
        fire: datetime | None = self.cron.next(now=local, default_utc=True,
                                               return_datetime=True)
        if fire is None:
            raise ScheduleExpressionError(f"{self.expression} never fires again")
        return fire.astimezone(UTC)


def parse_schedule(expression: str, timezone: str | None = None) -> Schedule:
    """Parse a ``rate(...)`` or ``cron(...)`` expression as EventBridge reads it."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleExpressionError(f"{expression}: the rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleExpressionError(
                f"{expression}: EventBridge wants 'rate(1 {unit.rstrip('s')})' for one and "
                f"the plural for more"
            )
        return Schedule(text, period=timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")]))
    cron = _CRON.match(text)
    if not cron:
        raise ScheduleExpressionError(f"{expression}: expected rate(...) or cron(...)")
    return Schedule(text, cron=_crontab(cron.group(1), expression), zone=_zone(timezone))


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleExpressionError(f"unknown time zone {name!r}") from exc


def _crontab(body: str, expression: str) -> Any:
    from crontab import CronTab

    fields = body.split()
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"{expression}: EventBridge cron has six fields (minutes hours day-of-month "
            f"month day-of-week year), got {len(fields)}"
        )
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(
            f"{expression}: exactly one of day-of-month and day-of-week must be '?'"
        )
    if any(mark in f for f in (dom, dow) for mark in ("W", "#")) or dow.endswith("L"):
        raise ScheduleExpressionError(
            f"{expression}: W, # and nL are valid in EventBridge but not evaluated locally; "
            f"fire it by hand with `offload fire`"
        )
    try:
        return CronTab(" ".join((minutes, hours, dom, month, _weekday_field(dow), year)))
    except ValueError as exc:
        raise ScheduleExpressionError(f"{expression}: {exc}") from exc


def _weekday_field(field: str) -> str:
    """EventBridge numbers weekdays 1-7 from Sunday; crontab 0-6 from Sunday."""
    if field == "?":
        return "*"

    def shift(match: re.Match[str]) -> str:
        value = int(match.group(0))
        if not 1 <= value <= 7:
            raise ScheduleExpressionError(f"day-of-week {value} is outside 1-7")
        return str(value - 1)

    head, slash, step = field.partition("/")
    return re.sub(r"\d+", shift, head) + slash + step
