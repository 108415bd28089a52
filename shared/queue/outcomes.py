"""Finished jobs' views, remembered under Offload's own key.

Streaq's only public read of one task's result, ``result_by_id``, subscribes to the
task's channel first; leaving the subscription costs coredis 6.9 its whole unsubscribe
timeout (0.1 s) every time (docs/UPSTREAM.md). A finished job's view never changes, so it
is read from Streaq once and then served from here, fetched with the job's metadata in
the same round trip.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from shared.queue.keys import Keys
from shared.queue.views import JobView, ms_to_dt

_TIMES = ("enqueued_at", "scheduled_for", "started_at", "finished_at")


def _ms(moment: datetime | None) -> int | None:
    return round(moment.timestamp() * 1000) if moment is not None else None


def encode(view: JobView) -> str:
    data = asdict(view)
    data.update({name: _ms(getattr(view, name)) for name in _TIMES})
    data.update(input=None, replay_of=None)  # read from the metadata beside it
    return json.dumps(data, default=str)


def decode(raw: str) -> JobView:
    data: dict[str, Any] = json.loads(raw)
    data.update({name: ms_to_dt(data.get(name)) for name in _TIMES})
    data["steps"] = tuple(data.get("steps") or ())
    return JobView(**data)


async def remember(redis: Any, keys: Keys, view: JobView, ttl_seconds: int) -> None:
    """Keep a finished view (the first one stored wins) for ``ttl_seconds``."""
    if view.finished:
        await redis.set(keys.outcome(view.id), encode(view), condition=_nx(), ex=ttl_seconds)


def _nx() -> Any:
    from coredis import PureToken

    return PureToken.NX
