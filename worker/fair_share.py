"""Fair share: at most N running jobs per owner across all workers (Redis, our own keys).

A job whose owner already runs N jobs does not wait in a worker slot: the retry policy
defers it with a short, growing, jittered delay through Streaq's public ``StreaqRetry``, and
the deferral does not count as one of the job's tries (a per-job counter, read only when a
job comes back). So one tenant's flood of 10,000 jobs holds at most N of a worker's slots,
and another tenant's jobs start as soon as a slot frees.

Slots are a sorted set per owner, slot id -> lease expiry: an entry whose worker died lapses
after the job's timeout (and a little slack), so a crash never holds a slot for ever. A
worker keeps a freed slot for a moment for the owner's next job, which then starts without
a round trip to Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streaq import StreaqRetry

from shared.jobs import CATALOGUE, RESERVED_OWNERS
from shared.queue.keys import Keys, now_ms
from shared.queue.scripts import LuaScript

log = logging.getLogger("offload.worker")

# Take (or renew) a slot unless the owner holds ``limit`` live ones: ARGV[3] is the slot's
# id, ARGV[4] when its lease lapses. KEYS[1] is our own sorted set, none of Streaq's.
ACQUIRE_SCRIPT = LuaScript("""
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) - now + 1000)
return 1
""")

# A slot is leased for this much longer than the job that takes it needs, so the next
# jobs to reuse it within that time need no renewal. A dead worker's slot lapses then.
LEASE_SLACK_SECONDS = 30.0

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


@dataclass(frozen=True)
class Slot:
    """One of an owner's running-job slots, taken for one job (``key`` None: unlimited)."""

    key: str | None
    id: str = ""
    lease_until_ms: int = 0


UNLIMITED = Slot(None)


@dataclass
class FairShare:
    """Per-owner running-job slots on one worker's Redis client.

    A job takes a slot (a member of the owner's sorted set, leased); when it ends the slot
    stays with this worker for :attr:`hold_seconds`, so the owner's next job here reuses it
    without a round trip. Every running job holds its own slot in Redis, with a lease
    that covers its whole run, so the limit holds across workers at every moment.
    """

    worker: Any  # the Streaq worker: its Redis client may be replaced on a reconnect
    keys: Keys
    per_owner: int  # 0: no limit
    # A freed slot stays with this worker this long for the owner's next job here (no round
    # trip), then goes back to Redis; another worker may wait that long for it. 0: at once.
    hold_seconds: float = 1.0

    def __post_init__(self) -> None:
        self._name = uuid.uuid4().hex[:12]  # this worker's slot ids: "<name>:<n>"
        self._count = itertools.count()
        self._held: dict[str, list[tuple[float, Slot]]] = {}  # key -> [(freed at, slot)]
        self._sweeper: asyncio.Task[None] | None = None

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

    def _slots(self, owner: str, job_name: str) -> str:
        spec = CATALOGUE.get(job_name)
        if spec is not None and spec.concurrency_per_owner is not None:
            return f"{self.keys.prefix}running:{owner}:{job_name}"
        return f"{self.keys.prefix}running:{owner}"

    async def acquire(self, owner: str, job_name: str, lease_seconds: float) -> Slot | None:
        """A slot for one of ``owner``'s ``job_name`` jobs that may run ``lease_seconds``,
        or None when the owner already runs its limit."""
        limit = self.limit_for(job_name, owner)
        if limit <= 0:
            return UNLIMITED
        key = self._slots(owner, job_name)
        now = now_ms()
        need = now + round(lease_seconds * 1000)
        held = self._held.get(key)
        if held:
            _, slot = held.pop()
            if not held:
                del self._held[key]
            if slot.lease_until_ms >= need:
                return slot
            slot_id = slot.id  # held, but its lease is too short for this job: renewed
        else:
            slot_id = f"{self._name}:{next(self._count)}"
        lease_until = need + round(LEASE_SLACK_SECONDS * 1000)
        taken = await ACQUIRE_SCRIPT(self.redis, [key], [now, limit, slot_id, lease_until])
        return Slot(key, slot_id, lease_until) if int(taken) else None

    def release(self, slot: Slot) -> None:
        """The job that held ``slot`` ended: hold it for the owner's next job here."""
        if slot.key is None:
            return
        self._held.setdefault(slot.key, []).append((time.monotonic(), slot))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Give back the slots held longer than :attr:`hold_seconds` (checked twice as
        often, so a slot is held at most 1.5 times that)."""
        while self._held:
            await asyncio.sleep(self.hold_seconds / 2)
            await self.give_back(time.monotonic() - self.hold_seconds)

    async def give_back(self, freed_before: float = math.inf) -> None:
        """Give back to Redis the held slots freed before ``freed_before`` (all: on stop).
        A slot that cannot be given back lapses with its lease."""
        due: list[Slot] = []
        for key in list(self._held):
            keep = [(at, slot) for at, slot in self._held[key] if at >= freed_before]
            due += [slot for at, slot in self._held[key] if at < freed_before]
            if keep:
                self._held[key] = keep
            else:
                del self._held[key]
        if not due:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for slot in due:
                    pipe.zrem(slot.key, [slot.id])
        except Exception as exc:
            log.warning("could not give back %d fair-share slot(s), they lapse with their "
                        "lease: %s: %s", len(due), type(exc).__name__, exc)

    async def close(self) -> None:
        """On the worker's stop: give every held slot back and stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.give_back()

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
