"""``JobQueue.enqueue`` in one round trip: metadata and task written by one script.

Covers what the script must keep from the check-then-publish it replaced (one job per
idempotency key however many callers race, conflicts that publish nothing) and that the
task it publishes is the one Streaq's own ``publish_task`` would have published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import streaq

from shared.errors import Conflict
from shared.jobs import CATALOGUE
from shared.queue import JobQueue, deterministic_job_id

pytestmark = pytest.mark.anyio

JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
PRIORITY = CATALOGUE[JOB].priority
VALIDATED = CATALOGUE[JOB].validate(PAYLOAD).model_dump(mode="json")  # what is stored

# streaq/lua/streaq.lua's publish_task, which shared/queue.py's _ENQUEUE_LUA reproduces for
# a task without dependencies or expiry. A new Streaq that changes it fails here: compare
# the two again, then update this digest.
STREAQ_PUBLISH_TASK_SHA256 = "b8f08d721c8fc9d9ff1203a8d8351ad72f732da2908670df0ca44935f3ea217f"


async def _stream_task_ids(queue: JobQueue) -> list[str]:
    entries = await queue.redis.xrange(queue.streaq.stream_key + PRIORITY, "-", "+")
    return [entry.field_values["task_id"] for entry in entries]


async def test_concurrent_calls_with_one_idempotency_key_make_one_job(queue: JobQueue) -> None:
    # GIVEN twenty callers racing with the same key and payload
    calls = [queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="race")
             for _ in range(20)]
    # WHEN they all run at once
    jobs = await asyncio.gather(*calls)
    # THEN one of them created the job, every one answers with it, and one task is queued
    assert sum(job.created for job in jobs) == 1
    assert {job.id for job in jobs} == {deterministic_job_id("idempotency", "alice", "race")}
    assert {job.status for job in jobs if not job.created} <= {"queued", "running", "done"}
    assert await _stream_task_ids(queue) == [jobs[0].id]


async def test_a_key_reused_with_another_payload_conflicts_and_publishes_nothing(
    queue: JobQueue,
) -> None:
    first = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
    with pytest.raises(Conflict) as raised:
        await queue.enqueue(JOB, {**PAYLOAD, "currency": "EUR"}, owner="alice",
                            idempotency_key="k")
    assert raised.value.details == {"job_id": first.id}
    assert await _stream_task_ids(queue) == [first.id]
    meta = json.loads(await queue.redis.get(queue.keys.job(first.id)))
    assert json.loads(meta["payload"]) == VALIDATED  # the first call's metadata is kept


async def test_another_owners_job_id_conflicts(queue: JobQueue) -> None:
    job = await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id="a" * 32)
    with pytest.raises(Conflict):
        await queue.enqueue(JOB, PAYLOAD, owner="mallory", job_id=job.id)
    meta = json.loads(await queue.redis.get(queue.keys.job(job.id)))
    assert meta["owner"] == "alice"
    assert await _stream_task_ids(queue) == [job.id]


async def test_an_id_streaq_already_holds_without_metadata_conflicts_and_writes_nothing(
    queue: JobQueue,
) -> None:
    # GIVEN a task published by Streaq's own client under an id we never recorded
    task = queue.streaq.enqueue_unsafe(JOB, **PAYLOAD)
    task.id = "b" * 32
    task.start(priority=PRIORITY)
    await task
    # WHEN the queue is asked to create a job with that id
    with pytest.raises(Conflict):
        await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id=task.id)
    # THEN neither metadata nor a second queue entry was written
    assert await queue.redis.get(queue.keys.job(task.id)) is None
    assert await _stream_task_ids(queue) == [task.id]


async def test_the_published_task_is_the_one_streaq_publishes(queue: JobQueue) -> None:
    streaq_worker = queue.streaq
    # GIVEN the same job enqueued by the queue and by Streaq itself, now and delayed
    ours_now = await queue.enqueue(JOB, PAYLOAD, owner="alice")
    ours_later = await queue.enqueue(JOB, PAYLOAD, owner="alice", delay_seconds=60)
    theirs_now = streaq_worker.enqueue_unsafe(JOB, **VALIDATED)
    theirs_now.start(priority=PRIORITY)
    await theirs_now
    theirs_later = streaq_worker.enqueue_unsafe(JOB, **VALIDATED)
    theirs_later.start(priority=PRIORITY, delay=60)
    await theirs_later

    # THEN the queued entries carry the same fields
    entries = await queue.redis.xrange(streaq_worker.stream_key + PRIORITY, "-", "+")
    assert [e.field_values["task_id"] for e in entries] == [ours_now.id, theirs_now.id]
    assert entries[0].field_values.keys() == entries[1].field_values.keys()
    # and the delayed ones the same kind of score (enqueue time + delay, in ms)
    delayed = dict(await queue.redis.zrange(streaq_worker.queue_key + PRIORITY, 0, -1,
                                            withscores=True))
    assert delayed.keys() == {ours_later.id, theirs_later.id}
    assert abs(delayed[ours_later.id] - delayed[theirs_later.id]) < 5_000
    # and the task bodies decode the same way, with our context beside the input
    bodies: dict[str, Any] = {}
    for task_id in (ours_now.id, theirs_now.id):
        raw = await queue.redis.get(streaq_worker.task_key + task_id)
        bodies[task_id] = await streaq_worker.deserialize(raw)
    ours, theirs = bodies[ours_now.id], bodies[theirs_now.id]
    assert ours.keys() == theirs.keys()
    assert ours["f"] == theirs["f"] == JOB
    assert {k: v for k, v in ours["k"].items() if not k.startswith("_")} == theirs["k"]
    # and neither task key expires (enqueue_unsafe tasks have no expiry)
    assert await queue.redis.pttl(streaq_worker.task_key + ours_now.id) == -1


def test_streaqs_publish_task_is_the_one_the_script_reproduces() -> None:
    source = (Path(streaq.__file__).parent / "lua" / "streaq.lua").read_text()
    start = source.index("redis.register_function('publish_task'")
    end = source.index("\nend)\n", start)
    digest = hashlib.sha256(source[start:end].encode()).hexdigest()
    assert digest == STREAQ_PUBLISH_TASK_SHA256
