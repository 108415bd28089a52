"""What every Python component of the dev stack does at start: die with its supervisor.

The supervisor stops its children itself; this covers the case where the supervisor is
killed outright (SIGKILL, a closed terminal), which would otherwise leave orphans.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def exit_with_parent(interval: float = 0.5) -> None:
    """Send ourselves SIGTERM once our parent is gone (we were re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()


def exit_on_sigterm() -> None:
    """SIGTERM ends the process through SystemExit, so ``finally`` blocks still run."""

    def handler(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
