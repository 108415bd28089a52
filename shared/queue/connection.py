"""The Streaq client every Offload process builds alike, and a connection that outlives
the call that opened it (one per Lambda container, kept across warm invocations)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from streaq import StreaqError, Worker

from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.queue import wire

T = TypeVar("T")

# How long a call that failed like a dead pool waits for the holder to finish exiting.
POOL_EXIT_GRACE_SECONDS = 0.5


def make_streaq(settings: Settings, **worker_kwargs: Any) -> Worker[Any]:
    """A Streaq ``Worker`` wired exactly as every Offload process must agree on.

    Clients (Lambdas, the CLI) and workers differ only in ``worker_kwargs``
    (concurrency, lifespan, grace period); queue name, priorities, serializer and signing
    secret come from settings so a job enqueued by one is readable by the other.
    """
    redis_kwargs: dict[str, Any] = {"connect_timeout": settings.redis_socket_timeout_seconds}
    redis_kwargs.update(worker_kwargs.pop("redis_kwargs", {}))
    return Worker(
        redis_url=settings.redis_url,
        queue_name=settings.queue_name,
        priorities=list(settings.priorities),
        signing_secret=settings.signing_secret.get_secret_value(),
        serializer=wire.dumps,
        deserializer=wire.loads,
        idle_timeout=settings.worker_idle_timeout_seconds,
        redis_kwargs=redis_kwargs,
        **worker_kwargs,
    )


def client_streaq(settings: Settings) -> Worker[Any]:
    """A client-only Streaq worker (enqueues and reads; never runs tasks)."""
    return make_streaq(
        settings,
        handle_signals=False,
        redis_kwargs={"stream_timeout": settings.redis_socket_timeout_seconds},
    )


def _collect(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning


class Connection:
    """Holds a client ``Worker``'s context open in a task of its own, so the connection
    pool lives on after the call that connected (warm Lambda invocations)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.streaq = client_streaq(settings)
        self._holder: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._entered = False  # whether self.streaq has been entered (it is not re-entered)

    async def connect(self) -> None:
        """Connect (idempotent). Concurrent callers share one connection attempt and all
        wait until it is ready."""
        if self._holder is None or self._holder.done():
            if self._entered:  # a client's pool is entered once: reconnect with a fresh one
                self.streaq = client_streaq(self.settings)
            self._entered = True
            self._ready = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._holder = asyncio.create_task(self._hold(self.streaq, self._ready, self._stop))
            # Callers see the error through ``ready`` (if any still wait); both are collected.
            self._holder.add_done_callback(_collect)
            self._ready.add_done_callback(_collect)
        holder, ready = self._holder, self._ready
        assert ready is not None
        try:
            await asyncio.shield(ready)  # one caller cancelled must not cancel the others
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._holder is holder:
                self._holder = None  # the next call connects again
            raise QueueUnavailable(f"cannot connect to Redis: {exc}") from exc

    async def _hold(self, streaq: Worker[Any], ready: asyncio.Future[None],
                    stop: asyncio.Event) -> None:
        try:
            async with streaq:
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                return  # the pool died; the next call reconnects
            raise

    async def aclose(self) -> None:
        await self._release()

    async def reset(self) -> None:
        """Drop the connection (after a SnapStart restore, or a Redis failover). Callers
        from now on connect a fresh client; the old one closes meanwhile."""
        streaq = client_streaq(self.settings)
        release = self._release()
        self.streaq, self._entered = streaq, False
        await release

    def _release(self) -> Awaitable[None]:
        """Detach the current holder at once; the awaitable stops it."""
        holder, stop = self._holder, self._stop
        self._holder = self._ready = self._stop = None

        async def stopped() -> None:
            if holder is None:
                return
            if stop is not None:
                stop.set()
            try:
                await asyncio.wait_for(holder, timeout=5)
            except (TimeoutError, Exception):
                holder.cancel()

        return stopped()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` against Redis; connection faults become :class:`QueueUnavailable`."""
        from coredis.exceptions import ConnectionError as RedisConnectionError

        await self.connect()
        holder = self._holder
        try:
            return await fn()
        except (RedisConnectionError, OSError, TimeoutError) as exc:
            await self.reset()
            raise QueueUnavailable(f"Redis is unreachable: {exc}") from exc
        except (StreaqError, RuntimeError) as exc:
            # A call racing the pool's death gets Streaq's "not initialized" or coredis'
            # "pool has exited" while the holder is still unwinding: give it a moment.
            if holder is not None:
                await asyncio.wait({holder}, timeout=POOL_EXIT_GRACE_SECONDS)
            if holder is None or not holder.done():
                raise
            if self._holder is holder:
                await self.reset()
            raise QueueUnavailable(f"the connection to Redis was lost: {exc}") from exc
