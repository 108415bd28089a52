"""Per-owner quotas, shared by every API instance through Redis (our own keys and scripts).

- **Enqueue rate**: a token bucket per owner (``limit_enqueue_per_second``, burst
  ``limit_enqueue_burst``), spent by each enqueue, upload and dead-letter retry.
- **Unfinished jobs**: a sorted set per owner of job ids scored by the latest time each
  could still be unfinished (its start + every try's timeout and backoff). Entries past
  that deadline are dropped before counting, so a crashed worker never leaks quota; a
  job's entry goes when it finishes for good or is aborted.
- **Long-polls**: leases (``?wait=``) per owner, scored by when they lapse.

Over a limit: :class:`RateLimited` (429) with ``Retry-After`` and the IETF
``RateLimit-Policy`` / ``RateLimit`` headers (draft-ietf-httpapi-ratelimit-headers).
Jobs owned by ``system`` (schedules, S3 events) are never limited.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.errors import ApiError
from shared.jobs import RESERVED_OWNERS
from shared.queue.keys import Keys, now_ms
from shared.queue.scripts import LuaScript

# One round trip: refill and spend the bucket, then count unfinished jobs. Both keys are
# this project's own, under ``Keys.prefix`` (the bucket and the unfinished-jobs set), none
# of Streaq's.
# Returns {verdict, remaining, retry_after_ms, unfinished}: 0 admitted, 1 over the rate,
# 2 too many jobs; the owner's unfinished jobs are counted when ARGV[5] asks for them.
_ADMIT = LuaScript("""
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max_unfinished = tonumber(ARGV[4])
local count_open = tonumber(ARGV[5])
local tokens = burst
local stamp = now
local open = 0
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 't', 's')
  if state[1] then
    tokens = math.min(burst, tonumber(state[1]) + (now - tonumber(state[2])) * rate / 1000)
  end
  if tokens < 1 then
    return {1, 0, math.ceil((1 - tokens) * 1000 / rate), 0}
  end
end
if max_unfinished > 0 or count_open > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  open = redis.call('ZCARD', KEYS[2])
  if max_unfinished > 0 and open >= max_unfinished then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local wait = 1000
    if first[2] then wait = math.max(1000, tonumber(first[2]) - now) end
    return {2, 0, math.min(wait, 60000), open}
  end
end
if rate > 0 then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(stamp))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
end
return {0, math.floor(tokens), 0, open}
""")

# Take a long-poll lease unless the owner holds ``max`` live ones: {taken, held}.
_LEASE = LuaScript("""
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) - now + 1000)
return {1, held + 1}
""")


class RateLimited(ApiError):
    """429: an owner's quota is spent; ``headers`` say which and when to try again."""

    status_code, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int, policy: str, limit_name: str,
                 remaining: int = 0) -> None:
        super().__init__(message, {"limit": limit_name, "retry_after_seconds": retry_after})
        self.retry_after = retry_after
        self.headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Policy": policy,
            "RateLimit": f'"{limit_name}";r={remaining};t={retry_after}',
        }


def _bucket_key(keys: Keys, owner: str) -> str:
    return f"{keys.prefix}bucket:{owner}"


def _leases_key(keys: Keys, owner: str) -> str:
    return f"{keys.prefix}longpolls:{owner}"


def limited(owner: str) -> bool:
    return owner not in RESERVED_OWNERS


def fair_priority(settings: Settings, unfinished: int, requested: str | None) -> str | None:
    """The priority to enqueue at: the lowest once the owner has
    ``fair_share_demote_after`` unfinished jobs (a flood waits behind everyone else's
    work, its own order kept), else what was asked for (None: the job's default)."""
    demote_after = settings.fair_share_demote_after
    if demote_after > 0 and unfinished >= demote_after:
        return settings.priorities[0]
    return requested


@dataclass
class Limits:
    """The owner quotas of one queue, for one Redis client (coredis)."""

    redis: Any
    keys: Keys
    settings: Settings

    def _enqueue_policy(self) -> str:
        s = self.settings
        window = max(1, math.ceil(s.limit_enqueue_burst / s.limit_enqueue_per_second)) \
            if s.limit_enqueue_per_second > 0 else 1
        return f'"enqueue";q={s.limit_enqueue_burst};w={window}'

    async def admit(self, owner: str) -> int:
        """Spend one enqueue token of ``owner`` and check their unfinished jobs; RateLimited
        when either is spent. Returns how many unfinished jobs the owner has (0 when
        neither the quota nor fair share's demotion needs the count)."""
        s = self.settings
        demoting = s.fair_share_demote_after > 0
        if not limited(owner) or (s.limit_enqueue_per_second <= 0
                                  and s.limit_unfinished_jobs <= 0 and not demoting):
            return 0
        verdict, remaining, wait_ms, unfinished = await _ADMIT(
            self.redis, [_bucket_key(self.keys, owner), self.keys.unfinished(owner)],
            [s.limit_enqueue_per_second, s.limit_enqueue_burst, now_ms(),
             s.limit_unfinished_jobs, int(demoting)])
        retry_after = max(1, math.ceil(int(wait_ms) / 1000))
        if int(verdict) == 1:
            raise RateLimited(
                f"too many jobs enqueued: at most {s.limit_enqueue_per_second:g} per second "
                f"(bursts of {s.limit_enqueue_burst}); retry after {retry_after} s",
                retry_after, self._enqueue_policy(), "enqueue", int(remaining))
        if int(verdict) == 2:
            raise RateLimited(
                f"too many unfinished jobs: at most {s.limit_unfinished_jobs} queued, "
                f"scheduled or running at once; retry after {retry_after} s",
                retry_after, f'"unfinished";q={s.limit_unfinished_jobs};w=1', "unfinished")
        return int(unfinished)

    async def lease_long_poll(self, owner: str, seconds: float) -> str | None:
        """A lease on one of ``owner``'s long-polls for ``seconds`` (None: unlimited);
        RateLimited when they already hold the maximum."""
        maximum = self.settings.limit_long_polls
        if not limited(owner) or maximum <= 0:
            return None
        lease = uuid.uuid4().hex
        now = now_ms()
        taken, _held = await _LEASE(
            self.redis, [_leases_key(self.keys, owner)],
            [now, maximum, now + round(seconds * 1000) + 1000, lease])
        if not int(taken):
            raise RateLimited(
                f"too many long-polls at once: at most {maximum} ?wait= requests; retry "
                f"after 1 s, or poll without wait", 1, f'"long-polls";q={maximum};w=1',
                "long-polls", 0)
        return lease

    async def release_long_poll(self, owner: str, lease: str | None) -> None:
        if lease is not None:
            await self.redis.zrem(_leases_key(self.keys, owner), [lease])


async def job_finished(redis: Any, keys: Keys, owner: str, job_id: str) -> None:
    """Free ``job_id``'s place among ``owner``'s unfinished jobs (finished or aborted)."""
    if limited(owner):
        await redis.zrem(keys.unfinished(owner), [job_id])
