"""Dead letters: jobs that failed for good, kept in Redis (not MongoDB) so that their
owner can list them and enqueue them again through the API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.queue.keys import Keys, now_ms


@dataclass(frozen=True)
class DeadLetter:
    """A job that failed for good: enough to show it and to enqueue it again."""

    id: str
    name: str
    owner: str
    payload: dict[str, Any]
    error_type: str
    error: str
    tries: int
    failed_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "owner": self.owner,
                "payload": self.payload,
                "error_type": self.error_type,
                "error": self.error,
                "tries": self.tries,
                "failed_ms": int(self.failed_at.timestamp() * 1000),
            },
            default=str,
        )

    @classmethod
    def from_json(cls, raw: str) -> DeadLetter:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            name=data["name"],
            owner=data["owner"],
            payload=data["payload"],
            error_type=data["error_type"],
            error=data["error"],
            tries=int(data["tries"]),
            failed_at=datetime.fromtimestamp(data["failed_ms"] / 1000, tz=UTC),
        )


async def record_dead_letter(redis: Any, keys: Keys, ttl: int, letter: DeadLetter) -> None:
    """Remember a job that failed for good, for ``ttl`` seconds."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.dead_letter(letter.id), letter.to_json(), ex=ttl)
        pipe.zadd(keys.dead_index(letter.owner), {letter.id: now_ms()})
        pipe.expire(keys.dead_index(letter.owner), ttl)


async def load_dead_letters(redis: Any, keys: Keys, job_ids: list[str]) -> list[DeadLetter | None]:
    """The dead letter of each of ``job_ids`` (None where there is none), one round trip."""
    if not job_ids:
        return []
    raws = await redis.mget([keys.dead_letter(job_id) for job_id in job_ids])
    return [DeadLetter.from_json(raw) if raw else None for raw in raws]


async def list_dead_letters(redis: Any, keys: Keys, owner: str, retention_seconds: int,
                            limit: int) -> list[DeadLetter]:
    """The owner's dead letters, newest first (index entries past retention are pruned)."""
    index = keys.dead_index(owner)
    await redis.zremrangebyscore(index, 0, now_ms() - retention_seconds * 1000)
    ids = await redis.zrange(index, 0, limit - 1, rev=True)
    return [letter for letter in await load_dead_letters(redis, keys, list(ids)) if letter]


async def forget_dead_letter(redis: Any, keys: Keys, job_id: str, owner: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete([keys.dead_letter(job_id)])
        pipe.zrem(keys.dead_index(owner), [job_id])
