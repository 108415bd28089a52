"""ECS task scale-in protection: held while any worker process of the task runs a job,
released once the whole task has been idle for ``task_protection_idle_seconds``.

The ECS container agent serves ``$ECS_AGENT_URI/task-protection/v1/state``. A PUT of
``{"ProtectionEnabled": true, "ExpiresInMinutes": N}`` (1 to 2,880 minutes; 120 when left
out) or ``{"ProtectionEnabled": false}`` answers 200 with ``{"protection": {...}}``, 200 with
``{"failure": {...}}`` when ECS refused, or an error status with ``{"error": {...}}`` (AWS
docs, "Amazon ECS task scale-in protection endpoint"; the agent's handler,
``ecs-agent/tmds/handlers/taskprotection/v1``). A protected task is stopped neither by
service scale-in nor by a deployment. The agent calls ECS ``UpdateTaskProtection`` with the
task role's credentials, so the role needs ``ecs:UpdateTaskProtection`` (infra/worker.yaml).

Protection belongs to the task, which may run several worker processes (``--processes N``).
Each process marks itself busy with a file in the shared state dir (``<pid>.busy``, present
while it runs at least one job: :class:`BusyMarker`); one :class:`ProtectionKeeper` per task
(the parent of ``--processes N``, or the one worker process) reads those files from a
thread and talks to the agent. An agent that fails is logged and retried with backoff; it
never touches a job.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.jobs import CATALOGUE
from worker.liveness import pid_alive

log = logging.getLogger("offload.worker")

AGENT_URI_ENV = "ECS_AGENT_URI"
STATE_PATH = "/task-protection/v1/state"
MAX_MINUTES = 2880  # the endpoint's limit (48 hours)
# Beyond the longest job's timeout: Streaq's backstop (timeout + 10 s), storing the outcome.
COVER_MARGIN_SECONDS = 60
POLL_SECONDS = 0.5
AGENT_TIMEOUT_SECONDS = 5.0
RETRY_FIRST_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0


class AgentError(Exception):
    """The agent did not set the protection: unreachable, an error status, or ECS refused."""


def agent_uri() -> str | None:
    """The ECS agent's URI, which ECS injects into every container; None elsewhere."""
    return os.environ.get(AGENT_URI_ENV) or None


def cover_seconds() -> float:
    """How long a job started now may still run: the catalogue's longest timeout, plus a
    margin (the retry policy ends a job at its timeout)."""
    longest = max(spec.timeout_seconds for spec in CATALOGUE.values() if not spec.is_pipeline)
    return longest + COVER_MARGIN_SECONDS


def minutes_for(cover: float) -> int:
    """``ExpiresInMinutes`` for a cover: twice it, so that renewing whenever less than the
    cover is left happens about once per cover, not at every job start."""
    return max(1, min(MAX_MINUTES, math.ceil(2 * cover / 60)))


class AgentClient:
    """PUTs the task's protection state to the ECS agent, one short request each."""

    def __init__(self, uri: str, timeout: float = AGENT_TIMEOUT_SECONDS) -> None:
        import httpx

        self.url = uri.rstrip("/") + STATE_PATH
        # trust_env=False: the agent is link-local; no proxy from the environment may carry it.
        self._http = httpx.Client(timeout=timeout, trust_env=False)

    def put(self, enabled: bool, minutes: int | None = None) -> None:
        """Set the protection; raise :class:`AgentError` unless the agent confirms it."""
        import httpx

        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled and minutes is not None:
            body["ExpiresInMinutes"] = minutes
        try:
            response = self._http.put(self.url, json=body)
        except httpx.HTTPError as exc:
            raise AgentError(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer: Any = response.json()
        except ValueError:
            answer = None
        if response.status_code == httpx.codes.OK and isinstance(answer, dict) \
                and "protection" in answer:
            return
        detail = None
        if isinstance(answer, dict):  # ECS's refusal, or the agent's own error
            detail = answer.get("failure") or answer.get("error")
        raise AgentError(f"HTTP {response.status_code}: {detail or response.text[:200]}")

    def close(self) -> None:
        self._http.close()


def any_busy(state_dir: Path) -> bool:
    """Whether a live worker process of this task marks itself busy (a killed process's
    file is ignored)."""
    for marker in state_dir.glob("*.busy"):
        try:
            pid = int(marker.stem)
        except ValueError:
            continue
        if pid_alive(pid):
            return True
    return False


class BusyMarker:
    """This process's ``<pid>.busy`` file, present while it runs a job; the callback of
    :attr:`worker.running_jobs.RunningJobs.on_busy`. It counts the workers that say busy:
    a worker rebuilt after a Redis fault has a registry of its own while the old one's jobs
    may still be ending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.busy = 0

    def __call__(self, busy: bool) -> None:
        self.busy = max(0, self.busy + (1 if busy else -1))
        try:
            if busy and self.busy == 1:
                self.path.touch()
            elif not busy and self.busy == 0:
                self.path.unlink(missing_ok=True)
        except OSError as exc:  # protection is best effort; the job goes on
            log.warning("cannot mark this worker %s in %s: %s", "busy" if busy else "idle",
                        self.path, exc)


class ProtectionKeeper:
    """From a thread: protect the task while any of its processes is busy, renew while less
    than ``cover`` seconds of protection are left (so any job started meanwhile ends before
    it lapses), and release it once the task has been idle for ``idle_seconds``."""

    def __init__(self, client: AgentClient, state_dir: Path, *, cover: float,  # noqa: PLR0913
                 idle_seconds: float, minutes: int | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.minutes = minutes or minutes_for(cover)
        if self.minutes * 60 < cover or self.minutes > MAX_MINUTES:
            raise ValueError(f"{self.minutes} min cannot cover jobs of {cover:.0f} s")
        self.client, self.state_dir, self.cover = client, state_dir, cover
        self.idle_seconds, self.poll_seconds = idle_seconds, poll_seconds
        self._covered_until = 0.0  # the agent confirmed protection until then (monotonic)
        self._held_until = 0.0  # protection may be held until then (an unanswered PUT too)
        self._idle_since: float | None = None  # the first look that found no job running
        self._failing: bool | None = None  # the action that failed last (None: none)
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="offload-task-protection",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; release the protection if it may be held (the workers have
        stopped, so nothing runs any more)."""
        self._stop.set()
        self._thread.join(timeout=AGENT_TIMEOUT_SECONDS + 1)
        if self._held_until > time.monotonic():
            self._set(False, time.monotonic())
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.step(time.monotonic())
            except Exception:  # never let the thread die silently
                log.exception("task scale-in protection: unexpected error")

    def step(self, now: float) -> None:
        """One look at the state dir, and at most one request to the agent."""
        busy = any_busy(self.state_dir)
        # Idle time counts from the first look that found the task idle, so the task has
        # been idle at least idle_seconds when it is released.
        if busy:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        if busy and self._covered_until - now < self.cover:
            want = True
        elif self._idle_since is not None and self._held_until > now \
                and now - self._idle_since >= self.idle_seconds:
            want = False
        else:
            return
        if want is not self._failing or now >= self._retry_at:  # back off per action
            self._set(want, now)

    def _set(self, enabled: bool, now: float) -> None:
        until = now + self.minutes * 60  # from before the request: ECS's is later
        renewal = enabled and self._covered_until > now
        if enabled:
            self._held_until = max(self._held_until, until)
        try:
            self.client.put(enabled, self.minutes if enabled else None)
        except AgentError as exc:
            if self._failing is not enabled:
                self._retry_delay = RETRY_FIRST_SECONDS
            log.warning("could not %s task scale-in protection: %s; trying again in %.0fs",
                        "set" if enabled else "release", exc, self._retry_delay)
            self._failing, self._retry_at = enabled, now + self._retry_delay
            self._retry_delay = min(2 * self._retry_delay, RETRY_MAX_SECONDS)
            return
        self._failing, self._retry_delay = None, RETRY_FIRST_SECONDS
        if enabled:
            self._covered_until = until
            log.info("task scale-in protection %s for %d min (jobs running)",
                     "renewed" if renewal else "on", self.minutes)
        else:
            self._covered_until = self._held_until = 0.0
            log.info("task scale-in protection released (no job running)")


@contextmanager
def protected_while_busy(settings: Settings, state_dir: Path) -> Iterator[None]:
    """For the block's duration, keep the task's protection (only where ECS_AGENT_URI is
    set: on ECS)."""
    uri = agent_uri()
    if uri is None:
        yield
        return
    keeper = ProtectionKeeper(AgentClient(uri), state_dir, cover=cover_seconds(),
                              idle_seconds=settings.task_protection_idle_seconds)
    log.info("task scale-in protection through %s (%d min at a time)", uri, keeper.minutes)
    keeper.start()
    try:
        yield
    finally:
        keeper.stop()
