"""``JobQueue.enqueue``: one job per id however many callers race, and whatever process
dies between any two of its Redis commands (docs/QUEUE.md, "Crash points").

A crash is simulated by making one step of the protocol raise in the calling process, so
the Redis writes before it are left exactly as a dead process would leave them. Runs are
counted by a real Streaq worker running a stand-in for the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from streaq.task import TaskStatus

from shared.config import Settings
from shared.errors import Conflict, NotFound, ReplicationUnconfirmed
from shared.jobs import CATALOGUE
from shared.queue import JobQueue, deterministic_job_id, publish
from shared.queue.meta import JobMeta
from tests.queue_support import OK, Runs, running, stand_in_worker

pytestmark = pytest.mark.anyio

JOB = "generate_sales_report"
PAYLOAD = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
VALIDATED = CATALOGUE[JOB].validate(PAYLOAD).model_dump(mode="json")  # what is stored
LEASE = 0.4


class Crash(Exception):
    """The calling process dies here."""


@pytest.fixture
async def short_lease(settings: Settings) -> AsyncIterator[JobQueue]:
    """A queue client whose publish lease lapses quickly, so replays take over soon."""
    async with JobQueue(settings, publish_lease_seconds=LEASE) as q:
        yield q


async def _meta(queue: JobQueue, job_id: str) -> JobMeta:
    raw = await queue.redis.get(queue.keys.job(job_id))
    assert raw is not None
    return JobMeta.from_json(raw)


async def _finish(queue: JobQueue, job_id: str) -> None:
    await queue.streaq.result_by_id(job_id, timeout=timedelta(seconds=10))
    await asyncio.sleep(0.3)  # time for a second run, were one coming


def _crash_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """Make ``owner.name`` raise :class:`Crash` on its first call only."""
    real = getattr(owner, name)
    calls = []

    async def crashing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Crash
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, crashing)


async def test_twenty_concurrent_calls_with_one_key_make_one_job_that_runs_once(
    queue: JobQueue, settings: Settings
) -> None:
    runs = Runs()
    async with running(stand_in_worker(settings, {JOB: OK}, runs)):
        # GIVEN twenty callers racing with the same key and payload
        calls = [queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="race")
                 for _ in range(20)]
        # WHEN they all run at once
        jobs = await asyncio.gather(*calls)
        # THEN one of them created the job, every one answers with it, and it runs once
        job_id = deterministic_job_id("idempotency", "alice", "race")
        assert sum(job.created for job in jobs) == 1
        assert {job.id for job in jobs} == {job_id}
        await _finish(queue, job_id)
    assert runs.of(job_id) == ["alice"]
    assert (await queue.view(job_id, "alice")).status == "done"


async def test_a_job_reserved_but_never_published_is_published_by_the_replay(
    short_lease: JobQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = short_lease
    # GIVEN a caller that died after writing the job's metadata, before publishing it
    _crash_once(monkeypatch, publish, "build_task")
    with pytest.raises(Crash):
        await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
    job_id = deterministic_job_id("idempotency", "alice", "k")
    assert await queue.streaq.queue_size() == 0
    assert (await queue.view(job_id, "alice")).status == "queued"  # its lock still held
    await asyncio.sleep(LEASE)
    lapsed = await queue.view(job_id, "alice")
    assert (lapsed.status, lapsed.error and lapsed.error["type"]) == (
        "failed", "EnqueueIncomplete")
    runs = Runs()
    async with running(stand_in_worker(settings, {JOB: OK}, runs)):
        # WHEN the caller sends the same request again
        again = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
        await _finish(queue, job_id)
    # THEN that call published the job: it ran once, for its owner
    assert (again.id, again.created) == (job_id, False)
    assert runs.of(job_id) == ["alice"]
    assert (await _meta(queue, job_id)).published


async def test_a_replay_waits_for_a_live_publisher_instead_of_publishing_again(
    short_lease: JobQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = short_lease
    # GIVEN a caller that died after writing the job's metadata (its lock still held)
    _crash_once(monkeypatch, publish, "build_task")
    with pytest.raises(Crash):
        await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id="c" * 32)
    # WHEN a replay comes at once
    started = asyncio.get_running_loop().time()
    again = await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id="c" * 32)
    # THEN it published only once the lock lapsed, and exactly one task is queued
    assert asyncio.get_running_loop().time() - started >= LEASE * 0.9
    assert again.created is False
    assert await queue.streaq.queue_size() == 1
    assert await queue.streaq.status_by_id(again.id) == TaskStatus.QUEUED


@pytest.mark.parametrize("finished_before_replay", [False, True])
async def test_a_job_published_but_never_marked_is_not_published_again(
    short_lease: JobQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    finished_before_replay: bool,
) -> None:
    queue = short_lease
    runs = Runs()
    worker = stand_in_worker(settings, {JOB: OK}, runs)
    # GIVEN a caller that died after publishing the job, before marking it published
    _crash_once(monkeypatch, publish.Publisher, "_mark")
    with pytest.raises(Crash):
        await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
    job_id = deterministic_job_id("idempotency", "alice", "k")
    assert not (await _meta(queue, job_id)).published
    async with running(worker):
        if finished_before_replay:  # (its task already ran when the replay comes)
            await _finish(queue, job_id)
        await asyncio.sleep(LEASE)
        # WHEN the same request comes again
        again = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
        await _finish(queue, job_id)
    # THEN it found the published task: one run, and the metadata now says so
    assert again.created is False
    assert runs.of(job_id) == ["alice"]
    assert (await _meta(queue, job_id)).published


async def test_a_replay_that_dies_while_repairing_leaves_the_next_replay_to_finish(
    short_lease: JobQueue, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = short_lease
    # GIVEN a creator and then a first replay that both died before publishing
    real = publish.build_task
    crashes = [Crash, Crash]

    def crashing(*args: Any) -> Any:
        if crashes:
            raise crashes.pop()
        return real(*args)

    monkeypatch.setattr(publish, "build_task", crashing)
    for _ in range(2):
        with pytest.raises(Crash):
            await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
        await asyncio.sleep(LEASE)
    runs = Runs()
    async with running(stand_in_worker(settings, {JOB: OK}, runs)):
        # WHEN a third call comes
        job = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
        await _finish(queue, job.id)
    # THEN the job ran once
    assert runs.of(job.id) == ["alice"]


async def test_a_key_reused_with_another_payload_conflicts_and_publishes_nothing(
    queue: JobQueue,
) -> None:
    # GIVEN a job made with an idempotency key
    first = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
    # WHEN the key comes again with another payload
    with pytest.raises(Conflict) as raised:
        await queue.enqueue(JOB, {**PAYLOAD, "currency": "EUR"}, owner="alice",
                            idempotency_key="k")
    # THEN it is a conflict naming the first job, nothing more is queued, the metadata kept
    assert raised.value.details == {"job_id": first.id}
    assert await queue.streaq.queue_size() == 1
    assert (await _meta(queue, first.id)).data == VALIDATED


async def test_another_owners_job_id_conflicts_and_reveals_nothing(queue: JobQueue) -> None:
    # GIVEN alice's job under an explicit id
    job = await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id="a" * 32)
    # WHEN mallory asks for the same id (same payload, then another)
    for payload in (PAYLOAD, {**PAYLOAD, "currency": "EUR"}):
        with pytest.raises(Conflict) as raised:
            await queue.enqueue(JOB, payload, owner="mallory", job_id=job.id)
        # THEN the conflict says only that the id is taken, and nothing changed
        assert raised.value.details is None
        assert raised.value.message == "this job id is taken"
    assert (await _meta(queue, job.id)).owner == "alice"
    assert await queue.streaq.queue_size() == 1
    with pytest.raises(NotFound):
        await queue.view(job.id, "mallory")


async def test_another_owners_idempotency_key_never_reaches_the_first_owners_job(
    queue: JobQueue,
) -> None:
    # GIVEN alice's job made with key "k"
    alices = await queue.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="k")
    # WHEN mallory uses the same key
    mallorys = await queue.enqueue(JOB, PAYLOAD, owner="mallory", idempotency_key="k")
    # THEN mallory gets a job of her own, and neither can read the other's
    assert mallorys.created and mallorys.id != alices.id
    with pytest.raises(NotFound):
        await queue.view(alices.id, "mallory")
    with pytest.raises(NotFound):
        await queue.view(mallorys.id, "alice")


async def test_an_id_streaq_already_holds_without_metadata_conflicts_and_writes_nothing(
    queue: JobQueue,
) -> None:
    # GIVEN a task published by Streaq's own client under an id we never recorded
    task = queue.streaq.enqueue_unsafe(JOB, **PAYLOAD)
    task.id = "b" * 32
    await task
    # WHEN the queue is asked to create a job with that id
    with pytest.raises(Conflict):
        await queue.enqueue(JOB, PAYLOAD, owner="alice", job_id=task.id)
    # THEN no metadata is left, and still only that one task is queued
    assert await queue.redis.get(queue.keys.job(task.id)) is None
    assert await queue.streaq.queue_size() == 1


async def test_a_delayed_job_is_scheduled_and_its_metadata_expires(queue: JobQueue) -> None:
    # WHEN a job is enqueued to run in a minute
    job = await queue.enqueue(JOB, PAYLOAD, owner="alice", delay_seconds=60)
    # THEN Streaq holds it as scheduled for then, and every key of ours has a TTL
    view = await queue.view(job.id, "alice")
    assert (job.status, view.status) == ("scheduled", "scheduled")
    assert view.scheduled_for is not None and view.enqueued_at is not None
    assert 55 <= (view.scheduled_for - view.enqueued_at).total_seconds() <= 65
    assert await queue.redis.ttl(queue.keys.job(job.id)) > 0
    assert not await queue.redis.exists([queue.keys.publish_lock(job.id)])


async def test_a_pipeline_records_each_steps_owner(queue: JobQueue) -> None:
    order = {"amount_cents": 100, "currency": "EUR", "reference": "r1"}
    # WHEN a pipeline job is enqueued
    job = await queue.enqueue("place_order", order, owner="alice")
    # THEN each step is listed, owned by the caller, and the job waits on its first step
    assert job.steps == (f"{job.id}-0", f"{job.id}-1", job.id)
    for step_id, name in zip(job.steps, CATALOGUE["place_order"].steps, strict=True):
        meta = await _meta(queue, step_id)
        assert (meta.owner, meta.published) == ("alice", True)
        assert meta.name == ("place_order" if step_id == job.id else name)
    assert (await queue.view(job.id, "alice")).status == "scheduled"


async def test_without_a_replica_the_wait_refuses_in_time_and_the_job_stays_enqueued(
    settings: Settings,
) -> None:
    # GIVEN the replica wait on, and a Redis with no replica to acknowledge anything
    waiting = settings.model_copy(update={"replica_wait_ms": 100})
    async with JobQueue(waiting) as q:
        # WHEN a job is enqueued with a key, and the same request is sent again
        started = asyncio.get_running_loop().time()
        with pytest.raises(ReplicationUnconfirmed) as first:
            await q.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="unconfirmed")
        took = asyncio.get_running_loop().time() - started
        with pytest.raises(ReplicationUnconfirmed) as again:
            await q.enqueue(JOB, PAYLOAD, owner="alice", idempotency_key="unconfirmed")
        # THEN each answers once the wait is over (no hang), naming the one job it made,
        # which is queued all the same
        assert 0.1 <= took < 5
        assert first.value.details == {"job_id": first.value.details["job_id"], "created": True}
        assert again.value.details == {"job_id": first.value.details["job_id"], "created": False}
        view = await q.view(first.value.details["job_id"], "alice")
        assert view.status == "queued"
        assert await q.streaq.queue_size() == 1
