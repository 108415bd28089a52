"""One event loop per process, kept across calls: how a Lambda container runs async code.

Lambda calls the handler synchronously, one invocation at a time per container. Creating
a new loop per invocation (``asyncio.run``) would drop the Redis connection pool every
time; instead the container keeps one :class:`asyncio.Runner` and runs each invocation on
it, so clients opened by one invocation are still connected in the next.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PersistentLoop:
    """Runs coroutines on one long-lived event loop; not shared between threads."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._owner: int | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        me = threading.get_ident()
        if self._owner is None:
            self._owner = me
        elif self._owner != me:
            coro.close()
            raise RuntimeError("PersistentLoop used from a second thread")
        # Not Runner.run: on the main thread it swaps the SIGINT handler in and out around
        # every call, for Ctrl-C handling a Lambda invocation has no use for.
        return self._runner.get_loop().run_until_complete(coro)

    def reset(self) -> None:
        """Close the loop (and everything on it); the next ``run`` starts a new one."""
        self._runner.close()
        self._runner = asyncio.Runner()
        self._owner = None
