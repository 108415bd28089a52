"""Reload for ``offload dev``: when code changes, restart the processes that run it.

A change under ``worker/`` restarts the workers (SIGTERM, so they hand on their jobs as at
any shutdown) and Streaq's web UI, which imports the worker; under ``functions/``, the
Lambda containers; under ``shared/``, all of them. It watches with ``watchfiles`` (what
Streaq's own ``--reload`` uses), Python files only, and debounces bursts of saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

WATCHED = ("worker", "shared", "functions")
DEBOUNCE_MS = 300


def affected(changed: Iterable[Path], root: Path, workers: list[str],
             containers: list[str]) -> list[str]:
    """The components to restart for ``changed`` files under ``root``, in start order."""
    tops = set()
    for path in changed:
        try:
            tops.add(path.resolve().relative_to(root.resolve()).parts[0])
        except (ValueError, IndexError):
            continue
    names: list[str] = []
    if tops & {"worker", "shared"}:
        names += workers
    if tops & {"functions", "shared"}:
        names += containers
    return names


def watch_code(root: Path, restart: Callable[[list[str], list[Path]], None],
               workers: list[str], containers: list[str], stop: threading.Event) -> None:
    """Until ``stop`` is set: on each batch of changed Python files under ``root``'s
    watched directories, call ``restart(components, changed files)``."""
    from watchfiles import PythonFilter, watch

    dirs = [root / name for name in WATCHED if (root / name).is_dir()]
    for changes in watch(*dirs, watch_filter=PythonFilter(), stop_event=stop,
                         debounce=DEBOUNCE_MS, raise_interrupt=False):
        paths = sorted({Path(p) for _, p in changes})
        names = affected(paths, root, workers, containers)
        if names:
            restart(names, paths)


def start_watching(root: Path, restart: Callable[[list[str], list[Path]], None],
                   workers: list[str], containers: list[str],
                   stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=watch_code, args=(root, restart, workers, containers, stop),
                              daemon=True, name="reload")
    thread.start()
    return thread
