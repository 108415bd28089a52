"""A running job's progress: the last fraction and message it reported, one small JSON
string per job under :meth:`Keys.progress`, kept as long as results are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.queue.keys import Keys, now_ms

MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Progress:
    """How far a job got: ``fraction`` in [0, 1], what it is doing, and when it said so."""

    fraction: float
    message: str
    updated_ms: int

    @classmethod
    def now(cls, fraction: float, message: str) -> Progress:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        return cls(round(float(fraction), 4), message[:MAX_MESSAGE_CHARS], now_ms())

    @property
    def updated_at(self) -> datetime:
        return datetime.fromtimestamp(self.updated_ms / 1000, tz=UTC)

    def to_json(self) -> str:
        return json.dumps({"f": self.fraction, "m": self.message, "t": self.updated_ms})

    @classmethod
    def from_json(cls, raw: str) -> Progress:
        data = json.loads(raw)
        return cls(float(data["f"]), str(data["m"]), int(data["t"]))


async def write_progress(redis: Any, keys: Keys, job_id: str, progress: Progress,
                         ttl_seconds: int) -> None:
    await redis.set(keys.progress(job_id), progress.to_json(), ex=ttl_seconds)


async def read_progress(redis: Any, keys: Keys, job_id: str) -> Progress | None:
    raw = await redis.get(keys.progress(job_id))
    return Progress.from_json(str(raw)) if raw else None
