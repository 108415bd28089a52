"""Start, watch and stop the dev stack's processes, with one prefixed log stream.

Every child runs in its own session (so its process group holds everything it spawns:
worker processes, moto's threads) and carries a marker in its environment
(``OFFLOAD_DEV_STACK=<id>``). Stopping sends SIGTERM to each group, SIGKILL to what is
left after the grace period, and finally sweeps ``/proc`` for anything still carrying the
marker, so a child that escaped its group (or a stack whose supervisor was killed) leaves
nothing behind.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

MARKER_ENV = "OFFLOAD_DEV_STACK"
_COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93", "95", "92", "94", "91")


class StartupError(RuntimeError):
    """A component did not come up; ``str()`` is the one-line reason."""


@dataclass
class ChildSpec:
    """How to run one component, and how to know it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_port: int | None = None
    ready_line: str | None = None  # regex matched against the child's output lines
    restart: bool = False  # stateless components (Lambda containers) come back after a crash
    cwd: str | None = None
    # Stopped before the services they use (Redis, moto, MongoDB), so they shut down
    # cleanly instead of logging lost connections.
    service: bool = False


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    ready_text: str = ""  # the output line that matched ``ready_line``
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))
    restarts: list[float] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def last_lines(self, n: int = 8) -> str:
        return "\n".join(list(self.tail)[-n:])


class LogStream:
    """One output for every component: ``name | line``, coloured on a terminal."""

    def __init__(self, out: TextIO | None = None, width: int = 14,
                 drop: Callable[[str, str], bool] | None = None) -> None:
        self.out = out or sys.stdout
        self.width = width
        self.drop = drop  # (component, line) -> leave it out of the stream
        self.colour = self.out.isatty() and not os.environ.get("NO_COLOR")
        self._lock = threading.Lock()
        self._colours: dict[str, str] = {}

    def raw(self, text: str) -> None:
        """Unprefixed lines (the banner)."""
        with self._lock:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def line(self, name: str, text: str) -> None:
        if self.drop is not None and self.drop(name, text):
            return
        prefix = name[: self.width].ljust(self.width)
        if self.colour:
            code = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
            prefix = f"\x1b[{code}m{prefix}\x1b[0m"
        with self._lock:
            try:
                self.out.write(f"{prefix} | {text}\n")
                self.out.flush()
            except (OSError, ValueError):
                pass  # the terminal went away; keep supervising


def metric_line(name: str, text: str) -> bool:
    """An EMF metric document a Lambda printed (CloudWatch reads them in AWS; a quiet
    local log leaves them out; Powertools' ``single_metric`` prints them whatever
    ``POWERTOOLS_METRICS_DISABLED`` says)."""
    return text.startswith('{"_aws"')


class Supervisor:
    """Owns the children: start, readiness, restart, stop."""

    def __init__(self, stack_id: str, log: LogStream) -> None:
        self.stack_id = stack_id
        self.log = log
        self.children: dict[str, Child] = {}
        self._stopping = threading.Event()
        # Held while children are restarted on purpose (reload), so the crash check never
        # sees them down and shutdown never races a restart.
        self._lock = threading.RLock()
        # With reload on, a component that keeps failing (say, a syntax error being edited)
        # waits for the next change instead of stopping the stack.
        self.park_on_failure = False
        self.parked: set[str] = set()

    def say(self, text: str) -> None:
        self.log.line("offload", text)

    # --- start -----------------------------------------------------------------------

    def start(self, spec: ChildSpec) -> Child:
        env = {**spec.env, MARKER_ENV: self.stack_id, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.Popen(
                spec.argv, env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            raise StartupError(f"{spec.name}: cannot run {spec.argv[0]}: {exc.strerror}") from exc
        previous = self.children.get(spec.name)
        child = Child(spec, proc, restarts=previous.restarts if previous else [])
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True,
                                      name=f"log-{spec.name}")
        child.pump.start()
        self.children[spec.name] = child
        return child

    def _pump(self, child: Child) -> None:
        pattern = re.compile(child.spec.ready_line) if child.spec.ready_line else None
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip()
            if not text:
                continue
            child.tail.append(text)
            if pattern is not None and not child.ready.is_set() and pattern.search(text):
                child.ready_text = text
                child.ready.set()
            self.log.line(child.spec.name, text)

    def wait_ready(self, names: Iterable[str], timeout: float,
                   cancel: threading.Event | None = None) -> None:
        """Block until every named child is ready; StartupError naming the first that is not."""
        pending = [self.children[n] for n in names]
        deadline = time.monotonic() + timeout
        while pending:
            if cancel is not None and cancel.is_set():
                raise StartupError("interrupted while starting")
            for child in list(pending):
                if child.proc.poll() is not None:
                    raise StartupError(
                        f"{child.spec.name} exited with code {child.proc.returncode} while "
                        f"starting; its last output:\n{child.last_lines()}"
                    )
                if self._is_ready(child):
                    pending.remove(child)
            if not pending:
                return
            if time.monotonic() > deadline:
                names_left = ", ".join(c.spec.name for c in pending)
                raise StartupError(f"not ready after {timeout:.0f} s: {names_left}")
            time.sleep(0.05)

    def _is_ready(self, child: Child) -> bool:
        if child.spec.ready_line is not None and not child.ready.is_set():
            return False
        if child.spec.ready_port is not None and not port_open(child.spec.ready_port):
            return False
        child.ready.set()
        return True

    # --- watch -----------------------------------------------------------------------

    def check(self) -> str | None:
        """Restart crashed stateless children; the reason to stop when a vital one died."""
        with self._lock:
            return self._check()

    def _check(self) -> str | None:
        for name, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None or self._stopping.is_set() or name in self.parked:
                continue
            reason = None
            if not child.spec.restart:
                reason = f"{name} exited with code {code}; its last output:\n{child.last_lines()}"
            else:
                now = time.monotonic()
                child.restarts[:] = [t for t in child.restarts if now - t < 60] + [now]
                if len(child.restarts) > 5:
                    reason = f"{name} crashed {len(child.restarts)} times in a minute"
            if reason is not None and self.park_on_failure:
                self.parked.add(name)
                self.say(f"{reason}\n{name} waits for the next code change (reload is on)")
                continue
            if reason is not None:
                return f"{reason}; giving up" if child.spec.restart else reason
            self.say(f"{name} exited with code {code}; starting a new one")
            if child.pump is not None:
                child.pump.join(timeout=1)
            self.start(child.spec)
        return None

    def restart(self, names: Iterable[str], grace: float, timeout: float) -> None:
        """Stop the named children as at shutdown (SIGTERM to the group, so workers hand on
        their jobs; SIGKILL after ``grace``), start them again from their specs, and wait
        until they are ready (StartupError when one is not)."""
        with self._lock:
            if self._stopping.is_set():
                return
            children = [self.children[n] for n in names if n in self.children]
            self._terminate(children, time.monotonic() + grace)
            for child in children:
                if child.proc.poll() is None or _group_alive(child.pid):
                    _signal_group(child.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.proc.wait(timeout=2)
                if child.pump is not None:
                    child.pump.join(timeout=1)
                child.restarts.clear()
                self.parked.discard(child.spec.name)
                self.start(child.spec)
        self.wait_ready([c.spec.name for c in children], timeout, self._stopping)

    # --- stop ------------------------------------------------------------------------

    def stop_all(self, grace: float = 4.0) -> list[int]:
        """SIGTERM the applications, then the services; SIGKILL whatever outlives ``grace``.

        Returns the PIDs that needed SIGKILL.
        """
        self._stopping.set()
        with self._lock:
            return self._stop_all(grace)

    def _stop_all(self, grace: float) -> list[int]:
        deadline = time.monotonic() + grace
        apps = [c for c in self.children.values() if not c.spec.service]
        services = [c for c in self.children.values() if c.spec.service]
        # Services get the last second at least, even when the applications took long.
        self._terminate(apps, min(deadline, time.monotonic() + max(grace - 1.0, 0.5)))
        self._terminate(services, max(deadline, time.monotonic() + 1.0))
        killed = []
        for child in self.children.values():
            # The leader may be gone while its group (worker processes) lingers.
            if child.proc.poll() is None or _group_alive(child.pid):
                killed.append(child.pid)
                _signal_group(child.pid, signal.SIGKILL)
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=2)
        killed += sweep_marked(self.stack_id)
        for child in self.children.values():
            if child.pump is not None:
                child.pump.join(timeout=1)
        return killed

    @staticmethod
    def _terminate(children: list[Child], until: float) -> None:
        for child in children:
            _signal_group(child.pid, signal.SIGTERM)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(0.0, until - time.monotonic()))

    def force_kill(self) -> None:
        """A second Ctrl-C: no more grace."""
        for child in self.children.values():
            _signal_group(child.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def marked_pids(stack_id: str) -> list[int]:
    """PIDs of live processes whose environment carries this stack's marker (Linux)."""
    needle = f"{MARKER_ENV}={stack_id}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def sweep_marked(stack_id: str) -> list[int]:
    """SIGKILL every process still carrying the marker; the PIDs it had to kill."""
    pids = marked_pids(stack_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held at once while asking, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when we could listen on ``port`` (nothing else holds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
