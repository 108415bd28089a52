"""Fair share: at most N running jobs per owner across all workers (Redis, our own keys).

A job whose owner already runs N jobs does not wait in a worker slot: the retry policy
defers it with a short, growing, jittered delay through Streaq's public ``StreaqRetry``, and
the deferral does not count as one of the job's tries (a per-job counter, read only when a
job comes back). So one tenant's flood of 10,000 jobs holds at most N of a worker's slots,
and another tenant's jobs start as soon as a slot frees.

Slots are a sorted set per owner, job id -> lease expiry: an entry whose worker died lapses
after the job's timeout, so a crash never holds a slot for ever.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streaq import StreaqRetry

from shared.jobs import CATALOGUE, RESERVED_OWNERS
from shared.queue.keys import Keys, now_ms

# Take a slot unless the owner holds ``limit`` live ones (a job that holds one keeps it).
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) - now + 1000)
return 1
"""

FIRST_DEFERRAL_SECONDS = 0.05
MAX_DEFERRAL_SECONDS = 0.5
DEFERRAL_COUNT_TTL_SECONDS = 7 * 24 * 3600


class Deferred(StreaqRetry):
    """The job waits for a slot of its owner's; not a failure and not one of its tries."""


class QuietDeferrals(logging.Filter):
    """Streaq logs every retry twice (a traceback, then "retrying in"); a deferral is
    routine, so both of its records are dropped. Install on Streaq's logger."""

    def __init__(self) -> None:
        super().__init__()
        self._deferred: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = record.getMessage()
        if isinstance(exc, Deferred):
            self._deferred.add(text.removeprefix("Retrying task ").rstrip("!"))
            return False
        if "retrying" in text and self._deferred:
            for job_id in list(self._deferred):
                if job_id in text:
                    self._deferred.discard(job_id)
                    return False
        return True


@dataclass
class FairShare:
    """Per-owner running-job slots on one worker's Redis client."""

    worker: Any  # the Streaq worker: its Redis client may be replaced on a reconnect
    keys: Keys
    per_owner: int  # 0: no limit

    _script: Any = None
    _script_client: Any = None

    @property
    def redis(self) -> Any:
        return self.worker.redis

    def limit_for(self, job_name: str, owner: str) -> int:
        """The owner's limit for this job: the catalogue's per-job limit, else the global
        one (0: unlimited; system jobs are never limited)."""
        if owner in RESERVED_OWNERS:
            return 0
        spec = CATALOGUE.get(job_name)
        own = spec.concurrency_per_owner if spec is not None else None
        return own if own is not None else self.per_owner

    def slots_key(self, owner: str, job_name: str) -> str | None:
        """Where the owner's running jobs of this kind are counted (None: not limited)."""
        return self._slots(owner, job_name) if self.limit_for(job_name, owner) > 0 else None

    def _slots(self, owner: str, job_name: str) -> str:
        spec = CATALOGUE.get(job_name)
        if spec is not None and spec.concurrency_per_owner is not None:
            return f"{self.keys.prefix}running:{owner}:{job_name}"
        return f"{self.keys.prefix}running:{owner}"

    async def acquire(self, owner: str, job_name: str, job_id: str,
                      lease_seconds: float) -> bool:
        limit = self.limit_for(job_name, owner)
        if limit <= 0:
            return True
        now = now_ms()
        redis = self.redis
        if self._script is None or self._script_client is not redis:  # a new client
            self._script, self._script_client = redis.register_script(_ACQUIRE), redis
        taken = await self._script(keys=[self._slots(owner, job_name)],
                                    args=[now, limit, job_id, now + round(lease_seconds * 1000)])
        return bool(int(taken))

    async def release(self, owner: str, job_name: str, job_id: str) -> None:
        if self.limit_for(job_name, owner) > 0:
            await self.redis.zrem(self._slots(owner, job_name), [job_id])

    def _deferrals_key(self, job_id: str) -> str:
        return f"{self.keys.job(job_id)}:deferred"

    async def deferrals(self, job_id: str) -> int:
        """How many times the job was deferred (read only for a job that came back)."""
        raw = await self.redis.get(self._deferrals_key(job_id))
        return int(raw or 0)

    async def defer(self, job_id: str, deferred_before: int) -> Deferred:
        """Count one more deferral and say when to try again (growing, jittered)."""
        key = self._deferrals_key(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, DEFERRAL_COUNT_TTL_SECONDS)
        delay = min(MAX_DEFERRAL_SECONDS, FIRST_DEFERRAL_SECONDS * (1.5 ** deferred_before))
        jitter = random.uniform(0.75, 1.25)  # noqa: S311 - spreading retries, not a secret
        return Deferred("deferred: the owner's running-job limit is reached",
                        delay=timedelta(seconds=delay * jitter))
