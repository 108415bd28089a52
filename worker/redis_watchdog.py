"""Keep a worker process serving through Redis faults, without restarting the process.

Left alone, a Streaq worker does not survive Redis going away. A connection that closes
(a restart, a failover) raises out of its fetch loop and ends the worker; a connection
that stops answering without closing (a stalled node, a black-holed route) blocks its
``XREADGROUP`` and heartbeat forever: the process looks alive and serves nothing.

:func:`supervise` runs the worker beside a watchdog that PINGs Redis through the worker's
own connection pool every ``worker_redis_check_seconds``, each ping bounded by
``redis_socket_timeout_seconds``. When a ping fails, or the worker ends with a Redis
error, the supervisor

1. lets jobs in flight run for at most the grace period (what SIGTERM does): the retry
   policy runs each job in its own cancel scope (:class:`~worker.running_jobs.RunningJobs`),
   and a job cut short there is retried (or its message reclaimed) elsewhere;
2. drops every connection of the pool, so nothing waits on a dead socket;
3. builds a fresh worker (same id) and starts it again, backing off while Redis stays
   unreachable.

A watchdog, not socket options alone: TCP keepalive (also enabled, by
:func:`redis_options`) notices a peer that is gone, but not a server or proxy that still
acknowledges packets and never answers. The client's read timeout (``stream_timeout``)
is a backstop for one dead connection while the pool's others still answer: it must be
longer than the blocking ``XREADGROUP`` (which waits up to the idle timeout for work).
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
from streaq import Worker
from streaq.types import StreaqError

from shared.config import Settings
from worker.running_jobs import RunningJobs

log = logging.getLogger("offload.worker")

RECONNECT_FIRST_DELAY_SECONDS = 0.5
RECONNECT_MAX_DELAY_SECONDS = 5.0
# Kernel keepalive: probe an idle connection after 10 s, every 5 s, give up after 3 misses.
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}


def redis_options(settings: Settings) -> dict[str, Any]:
    """coredis options for a worker's Redis client: a bounded connect, TCP keepalive, and
    a read timeout (:func:`read_timeout`) no reply may exceed."""
    options = {getattr(socket, name): value for name, value in KEEPALIVE.items()
               if hasattr(socket, name)}
    return {
        "connect_timeout": settings.redis_socket_timeout_seconds,
        "stream_timeout": read_timeout(settings),
        "socket_keepalive": True,
        "socket_keepalive_options": options,
    }


def read_timeout(settings: Settings) -> float:
    """The longest a reply may take: the longest blocking read (``XREADGROUP`` blocks up
    to the idle timeout) plus the socket timeout. A read that overruns is tried twice
    more on fresh connections (coredis' default retry policy: one dead connection costs
    a command one read timeout), then raises ``TimeoutError`` and :func:`supervise`
    reconnects."""
    return settings.worker_idle_timeout_seconds + settings.redis_socket_timeout_seconds


def is_redis_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception in a group) is Redis being unreachable."""
    from coredis.exceptions import RedisError

    if isinstance(exc, BaseExceptionGroup):
        return all(is_redis_fault(inner) for inner in exc.exceptions)
    return isinstance(exc, RedisError | OSError | TimeoutError)


async def supervise(build: Callable[[], Worker[Any]], settings: Settings) -> None:
    """Run workers made by ``build`` until one stops on its own (signal, burst)."""
    delay = RECONNECT_FIRST_DELAY_SECONDS
    while True:
        worker = build()
        started = time.monotonic()
        fault = await run_until_fault(worker, settings)
        if fault is None:
            return
        if time.monotonic() - started > RECONNECT_MAX_DELAY_SECONDS * 2:
            delay = RECONNECT_FIRST_DELAY_SECONDS  # it served for a while: a new outage
        log.warning("worker %s lost Redis (%s); starting again in %.1fs", worker.id, fault,
                    delay)
        if await _stop_requested_within(delay):
            log.info("worker %s stopped while Redis was unreachable", worker.id)
            return
        delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)


async def run_until_fault(worker: Worker[Any], settings: Settings) -> str | None:
    """Run ``worker``; None when it stopped on its own, else why Redis was given up on."""
    fault: str | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def run_worker(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                await worker.run_async(task_status=task_status)
                tg.cancel_scope.cancel()  # stopped on its own: stop watching

            # Start-up (Redis commands, the lifespan's clients) is bounded too: a Redis
            # that accepts connections and never answers would otherwise hold it forever,
            # before the watchdog starts.
            with anyio.fail_after(startup_limit(settings)):
                await tg.start(run_worker)
            fault = await watch(worker, settings)
            _release(worker, settings.worker_grace_period_seconds)
            tg.cancel_scope.cancel()
    except Exception as exc:
        if not is_redis_fault(exc):
            raise
        fault = fault or _describe(exc)
        _disconnect(worker)  # nothing may wait on its sockets
    return fault


def startup_limit(settings: Settings) -> float:
    """How long a worker may take to start: a few Redis round trips and the lifespan."""
    return max(3 * settings.redis_socket_timeout_seconds, 5.0)


async def watch(worker: Worker[Any], settings: Settings) -> str:
    """PING through the worker's pool until one fails; return why it failed."""
    while True:
        await anyio.sleep(settings.worker_redis_check_seconds)
        try:
            with anyio.fail_after(settings.redis_socket_timeout_seconds):
                await worker.redis.ping()
        except Exception as exc:
            if not is_redis_fault(exc):
                raise
            if isinstance(exc, TimeoutError):
                return f"no answer to PING within {settings.redis_socket_timeout_seconds}s"
            return _describe(exc)


def _release(worker: Worker[Any], grace_seconds: float) -> None:
    """Give jobs in flight the grace period, then drop every connection of the pool."""
    cut = RunningJobs.of(worker).cut_short_at(anyio.current_time() + grace_seconds)
    if cut:
        log.info("worker %s: %d job(s) in flight get %ss to finish", worker.id, cut,
                 grace_seconds)
    _disconnect(worker)


def _disconnect(worker: Worker[Any]) -> None:
    try:
        pool = worker.redis.connection_pool
    except StreaqError:  # never connected: no socket to drop
        return
    pool.disconnect()


async def _stop_requested_within(seconds: float) -> bool:
    """Sleep ``seconds``; True if SIGTERM/SIGINT arrived meanwhile (no worker to drain)."""
    with anyio.move_on_after(seconds), anyio.open_signal_receiver(
        signal.SIGTERM, signal.SIGINT
    ) as signals:
        async for _ in signals:
            return True
    return False


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
