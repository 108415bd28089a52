"""Every key a job leaves in Redis expires: nothing a caller does fills the cache for ever."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config import Settings
from shared.queue import JobQueue

pytestmark = pytest.mark.anyio
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


async def all_keys(redis: Any) -> dict[str, int]:
    """Every key on the test's server with its PTTL (-1: no expiry)."""
    found: dict[str, int] = {}
    async for key in redis.scan_iter(match="*"):
        name = key.decode() if isinstance(key, bytes) else str(key)
        found[name] = int(await redis.pttl(name))
    return found


async def test_every_key_of_every_kind_of_job_expires(worker: Any, queue: JobQueue,
                                                      settings: Settings) -> None:
    owner = f"u-{uuid.uuid4().hex[:8]}"
    waited = []
    # A finished job, one with an Idempotency-Key, a job that fails for good (a dead
    # letter), a system job, a pipeline that fails at its first step, an aborted job.
    waited.append(await queue.enqueue("generate_sales_report", REPORT, owner=owner))
    waited.append(await queue.enqueue("generate_sales_report", REPORT, owner=owner,
                                      idempotency_key="k-1"))
    waited.append(await queue.enqueue("send_welcome_email", {}, owner=owner))
    system_job = await queue.enqueue("cleanup_expired_sessions", {}, owner="system")
    waited.append(await queue.enqueue("place_order", {"amount_cents": 100, "currency": "EUR",
                                                      "reference": "R-1"}, owner=owner))
    for job in waited:
        await queue.wait(job.id, owner, timeout=30)
    await queue.wait(system_job.id, "system", timeout=30)
    # Jobs that wait: 29 days ahead (run_at), and one aborted before it ran.
    await queue.enqueue("generate_sales_report", REPORT, owner=owner,
                        run_at=datetime.now(UTC) + timedelta(days=29))
    later = await queue.enqueue("generate_sales_report", REPORT, owner=owner,
                                delay_seconds=3600)
    await queue.abort(later.id, owner, wait_seconds=1)
    # The API's quotas: the bucket, the unfinished set, a long-poll lease.
    await queue.admit(owner)
    lease = await queue.lease_long_poll(owner, 5)
    keys = await all_keys(queue.redis)
    await queue.release_long_poll(owner, lease)
    ours = {k: ttl for k, ttl in keys.items() if settings.queue_name in k}
    assert len(ours) > 20, ours  # the jobs above left plenty behind
    forever = sorted(k.split(f"{settings.queue_name}:", 1)[1]
                     for k, ttl in ours.items() if ttl == -1)
    assert forever == sorted(STREAQ_STRUCTURES), forever


# Streaq's own structures, one per queue: they live as long as the queue, and their entries
# go when their tasks finish (streams, delayed sets) or their results expire (the index).
STREAQ_STRUCTURES = ("index:results", "queues:delayed:normal", "queues:high",
                     "queues:low", "queues:normal")
