"""The Lambda container's long-lived state, shared by every handler in ``functions/``.

A Lambda container handles one invocation at a time, for many invocations. It keeps one
:class:`Container`: the settings, one event loop (:class:`shared.aio.PersistentLoop`) and a
:class:`JobQueue` connected on that loop, so a warm invocation reuses the Redis connection.
Handlers reach it through :func:`run`; tests call :func:`configure` with their own settings.

After a SnapStart restore the snapshot's sockets are dead: the runtime hook registered at
the bottom of this module drops the loop and the client so the next call reconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from shared.aio import PersistentLoop
from shared.config import Settings, get_settings
from shared.queue import JobQueue

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")


@dataclass
class Container:
    """One Lambda container's long-lived state."""

    settings: Settings
    loop: PersistentLoop = field(default_factory=PersistentLoop)
    queue: JobQueue = field(init=False)
    _s3: S3Client | None = field(default=None, init=False)
    _ecs: Any = field(default=None, init=False)
    _events: Any = field(default=None, init=False)
    _events_ready: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.queue = JobQueue(self.settings)

    @property
    def s3(self) -> S3Client:
        """The S3 client, built on first use: only the routes that touch S3 import boto3."""
        if self._s3 is None:
            from shared.aws import s3_client

            self._s3 = s3_client(self.settings)
        return self._s3

    @property
    def ecs(self) -> Any:
        """The ECS client, built on first use (queue_metrics only)."""
        if self._ecs is None:
            from shared.aws import ecs_client

            self._ecs = ecs_client(self.settings)
        return self._ecs

    @property
    def events(self) -> Any:
        """Where job events go (shared.job_events), built on first use; None: off."""
        if not self._events_ready:
            from shared.job_events import sink_for

            self._events, self._events_ready = sink_for(self.settings), True
        return self._events


_lock = threading.Lock()
_override: Settings | None = None
_container: Container | None = None


def configure(settings: Settings | None) -> None:
    """Use ``settings`` from now on (``None``: the environment's); drops the old container."""
    global _override
    shutdown()
    _override = settings


def current() -> Container:
    """The container's state, built on first use (invalid settings raise here, loudly)."""
    global _container
    with _lock:
        if _container is None:
            _container = Container(_override or get_settings())
        return _container


def settings() -> Settings:
    """The container's settings."""
    return current().settings


def run(work: Callable[[JobQueue], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(queue)`` on the container's loop, with its connected queue."""
    state = current()
    return state.loop.run(work(state.queue))


def shutdown() -> None:
    """Close the queue client and the loop (tests, between configurations)."""
    state = _take()
    if state is not None:
        state.loop.run(state.queue.aclose())
        state.loop.reset()


def reset_connections() -> None:
    """Drop the loop and the client, for the SnapStart after-restore hook: connections
    made before the snapshot are dead after a restore, so no graceful close is attempted
    (closing the loop cancels their tasks); the next call connects afresh."""
    state = _take()
    if state is not None:
        state.loop.reset()


def _take() -> Container | None:
    global _container
    with _lock:
        state, _container = _container, None
    return state


def _register_snapstart_hook() -> None:
    # Provided by the Lambda Python runtime (SnapStart), not by PyPI.
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:
        return
    register_after_restore(reset_connections)


_register_snapstart_hook()
