"""Unit checks of the delivery guards in ``worker/redelivery.py`` (their behaviour against
real worker processes is in tests/faults: test_worker_kill.py, test_sigterm_drain.py)."""

from __future__ import annotations

from typing import Any

import pytest
from streaq import Worker
from streaq.types import StreamMessage

from worker.redelivery import run_each_message_once, set_prefetch


def _worker(concurrency: int = 4) -> Worker[Any]:
    return Worker(redis_url="redis://127.0.0.1:1/0", concurrency=concurrency)


@pytest.mark.parametrize(("prefetch", "fetched_at_most"), [(None, 8), (0, 4), (2, 6)])
def test_prefetch_is_counted_beyond_the_free_slots(prefetch: int | None,
                                                   fetched_at_most: int) -> None:
    worker = _worker(concurrency=4)
    set_prefetch(worker, prefetch)
    # Streaq fetches until it holds this many messages, running and buffered together
    assert worker.prefetch == fetched_at_most


@pytest.mark.anyio
async def test_a_second_copy_of_a_running_message_is_dropped() -> None:
    worker = _worker()
    ran: list[str] = []

    async def run_task(msg: StreamMessage) -> None:
        ran.append(msg.task_id)

    worker.run_task = run_task  # type: ignore[method-assign]
    run_each_message_once(worker)
    first = StreamMessage(message_id="1-0", task_id="a", priority="normal", enqueue_time=0)
    other = StreamMessage(message_id="2-0", task_id="b", priority="normal", enqueue_time=0)
    # GIVEN message 1-0 running in this worker
    worker._running_tasks["normal"].add("1-0")
    # WHEN a copy of it and another message arrive
    await worker.run_task(first)
    await worker.run_task(other)
    # THEN only the other one runs
    assert ran == ["b"]


@pytest.mark.anyio
async def test_a_fetch_that_never_answers_ends_with_a_timeout(settings: Any) -> None:
    import anyio

    from worker.supervisor import bound_fetches

    quick = settings.model_copy(update={"worker_idle_timeout_seconds": 1.1,
                                        "redis_socket_timeout_seconds": 0.1})
    worker = _worker()
    reads: list[tuple[int, bool]] = []

    entries: dict[str, Any] = {"stream": ()}

    async def answers(count: int, block: bool = False) -> Any:
        reads.append((count, block))
        return entries

    async def never_answers(count: int, block: bool = False) -> Any:
        await anyio.sleep_forever()

    worker._read_streams_legacy = answers  # type: ignore[method-assign]
    worker._read_streams_max_count = never_answers  # type: ignore[method-assign]
    bound_fetches(worker, quick)
    # A fetch that answers is passed through ...
    assert await worker._read_streams_legacy(3, block=True) is entries
    assert reads == [(3, True)]
    # ... and one stuck on a dead connection gives up after idle timeout + socket timeout
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await worker._read_streams_max_count(3, block=True)
