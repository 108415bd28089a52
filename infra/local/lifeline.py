"""What every Python component of the dev stack shares: die with its supervisor, and print
whole lines.

The supervisor stops its children itself; this covers the case where the supervisor is
killed outright (SIGKILL, a closed terminal), which would otherwise leave orphans.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: the supervisor reads lines, and several threads print."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


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
