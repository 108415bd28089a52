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
