"""Redelivery in one worker: the prefetch setting, a second copy of a running message (the
retry policy runs the job once), and the Redis client's read timeout. Their behaviour
against real worker processes is in tests/faults (test_worker_kill.py,
test_sigterm_drain.py, test_redis_silent.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from coredis import Redis
from coredis.response.types import StreamPendingExt
from streaq import Worker
from streaq.constants import REDIS_GROUP

from shared.config import Settings
from shared.jobs import CONTEXT_KWARG
from shared.queue import make_streaq
from worker.redelivery import set_prefetch
from worker.redis_watchdog import read_timeout, redis_options

IDLE_TIMEOUT = 2.0


def _worker(concurrency: int = 4) -> Worker[Any]:
    return Worker(redis_url="redis://127.0.0.1:1/0", concurrency=concurrency)


@pytest.mark.parametrize(("prefetch", "fetched_at_most"), [(None, 8), (0, 4), (2, 6)])
def test_prefetch_is_counted_beyond_the_free_slots(prefetch: int | None,
                                                   fetched_at_most: int) -> None:
    worker = _worker(concurrency=4)
    set_prefetch(worker, prefetch)
    # Streaq fetches until it holds this many messages, running and buffered together
    assert worker.prefetch == fetched_at_most


@pytest.fixture
def quick_idle(settings: Settings) -> Settings:
    # One running job per owner: a second copy of a running job must not need a slot.
    return settings.model_copy(update={"worker_idle_timeout_seconds": IDLE_TIMEOUT,
                                       "owner_concurrency": 1})


@pytest.fixture
async def counting_worker(quick_idle: Settings, mongo: Any) -> AsyncIterator[Worker[Any]]:
    """A worker with a slow task that counts its runs, and a no-op to wake its fetch."""
    from worker.app import build_worker

    w = build_worker(quick_idle, concurrency=4)
    runs: list[int] = []

    @w.task(name="slow_count", max_tries=3)
    async def slow_count() -> int:
        runs.append(1)
        await anyio.sleep(2.5)
        return len(runs)

    @w.task(name="wake")
    async def wake() -> None: ...

    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        yield w
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_second_copy_of_a_running_message_waits_for_the_first_one_s_outcome(
    quick_idle: Settings, counting_worker: Worker[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="offload.worker")
    client = make_streaq(quick_idle)
    async with client:
        # GIVEN a job running in the worker, its owner's only one allowed
        task = client.enqueue_unsafe("slow_count", **{CONTEXT_KWARG: {"owner": "tenant-a"}})
        await task
        stream = client.stream_key + client.priorities[-1]
        with anyio.fail_after(10):
            while not await client.redis.xpending(stream, REDIS_GROUP, start="-", end="+",
                                                  count=10, consumer=counting_worker.id):
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)
        # WHEN its message looks idle and the same worker fetches it again (its fetch
        # reclaims idle messages first; a new message wakes the blocking read)
        waiting = "already running in this worker; this copy waits"
        with anyio.fail_after(10):
            while waiting not in caplog.text:
                pending = await client.redis.xpending(stream, REDIS_GROUP, start="-", end="+",
                                                      count=10, consumer=counting_worker.id)
                ids = [p.identifier for p in pending if isinstance(p, StreamPendingExt)]
                await client.redis.xclaim(stream, REDIS_GROUP, counting_worker.id, 0, ids,
                                          justid=True, idle=counting_worker.idle_timeout)
                await client.enqueue_unsafe("wake")
                await anyio.sleep(0.3)
        result = await client.result_by_id(task.id, timeout=timedelta(seconds=10))
    # THEN the job's code ran once, and both copies finished with its outcome
    assert result.success, result
    assert result.result == 1
    assert caplog.text.count(f"job slow_count {task.id} try") == 1


def test_the_worker_s_read_timeout_outlasts_the_blocking_fetch(settings: Settings) -> None:
    # GIVEN the worker's Redis options
    options = redis_options(settings)
    # THEN no reply may take longer than the blocking XREADGROUP plus the socket timeout,
    # and an idle fetch is never cut by it
    assert options["stream_timeout"] == read_timeout(settings)
    assert read_timeout(settings) == (settings.worker_idle_timeout_seconds
                                      + settings.redis_socket_timeout_seconds)


@pytest.mark.anyio
async def test_a_reply_that_never_comes_ends_with_a_timeout(settings: Settings,
                                                           redis_url: str) -> None:
    from tests.faults.servers import SilentProxy

    quick = settings.model_copy(update={"worker_idle_timeout_seconds": 1.1,
                                        "redis_socket_timeout_seconds": 0.2})
    proxy = SilentProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    try:
        # GIVEN a client with the worker's Redis options, connected through a proxy
        client: Redis[str] = Redis.from_url(proxy.url, decode_responses=True,
                                            **redis_options(quick))
        async with client:
            assert await client.ping()
            # WHEN the connection stops answering without closing
            proxy.go_silent()
            await anyio.sleep(0.3)  # the proxy's pumps notice between two reads
            started = anyio.current_time()
            # THEN a command gives up after the read timeout (coredis' default retry policy
            # tries it twice more, on fresh connections, each bounded the same way)
            with anyio.fail_after(10), pytest.raises(TimeoutError):
                await client.ping()
            waited = anyio.current_time() - started
    finally:
        proxy.close()
    assert read_timeout(quick) - 0.1 <= waited < 3 * read_timeout(quick) + 2
