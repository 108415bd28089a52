"""Job events: every state change of a job, published as it happens.

An event is EventBridge's shape: source ``offload``, detail-type ``Job State Change``, and
a detail with the job's id, name, owner, state (``queued``, ``started``, ``progress``,
``succeeded``, ``failed``, ``aborted``), tries, time and, when there is one, its error or
progress. Never the job's input or result: subscribers read those through the API.

Where they go (settings): ``OFFLOAD_JOB_EVENTS_BUS`` (an EventBridge bus, in AWS) or
``OFFLOAD_JOB_EVENTS_FILE`` (JSON lines, the dev stack: ``offload events`` tails it).
Publishing never fails a job or a request: a failure is logged and the event dropped.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("offload.events")

SOURCE = "offload"
DETAIL_TYPE = "Job State Change"
STATES = ("queued", "started", "progress", "succeeded", "failed", "aborted")
_BATCH = 10  # PutEvents takes at most 10 entries


def detail(job_id: str, name: str, owner: str, state: str, *, tries: int = 0,  # noqa: PLR0913
           error: dict[str, str] | None = None,
           progress: dict[str, Any] | None = None,
           at: datetime | None = None) -> dict[str, Any]:
    """One event's detail (no input, no result); ``time`` is when the change happened
    (``at``, default now), which orders events that may arrive out of order."""
    if state not in STATES:
        raise ValueError(f"unknown job state {state!r}")
    body: dict[str, Any] = {"job_id": job_id, "name": name, "owner": owner, "state": state,
                            "tries": tries, "time": (at or datetime.now(UTC)).isoformat()}
    if error:
        body["error"] = error
    if progress:
        body["progress"] = progress
    return body


class Sink(Protocol):
    def publish(self, details: list[dict[str, Any]]) -> None: ...


class EventBridgeSink:
    """PutEvents on one bus, ten entries a call."""

    def __init__(self, client: Any, bus: str) -> None:
        self.client = client
        self.bus = bus

    def publish(self, details: list[dict[str, Any]]) -> None:
        for start in range(0, len(details), _BATCH):
            entries = [{"Source": SOURCE, "DetailType": DETAIL_TYPE, "EventBusName": self.bus,
                        "Detail": json.dumps(d), "Resources": []}
                       for d in details[start:start + _BATCH]]
            answer = self.client.put_events(Entries=entries)
            if answer.get("FailedEntryCount"):
                log.warning("%d job event(s) refused by EventBridge: %s",
                            answer["FailedEntryCount"],
                            [e.get("ErrorMessage") for e in answer.get("Entries", [])
                             if e.get("ErrorCode")][:3])


class FileSink:
    """JSON lines in one file, EventBridge's envelope around each detail (the dev stack)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def publish(self, details: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps({"source": SOURCE, "detail-type": DETAIL_TYPE,
                                    "time": d["time"], "detail": d}) + "\n" for d in details)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(lines)


def sink_for(settings: Any) -> Sink | None:
    """The sink the settings name (None: events are off)."""
    if settings.job_events_bus:
        from shared.aws import events_client

        return EventBridgeSink(events_client(settings), settings.job_events_bus)
    if settings.job_events_file:
        return FileSink(Path(settings.job_events_file))
    return None


def publish_now(sink: Sink | None, event: dict[str, Any]) -> None:
    """Publish one event where a request waits for it (the API: a Lambda may freeze right
    after it answers, so nothing is left in a buffer). Logged, never raised."""
    if sink is None:
        return
    try:
        sink.publish([event])
    except Exception as exc:  # an event is never worth a failed request
        log.warning("job event not published: %s: %s", type(exc).__name__, exc)


class Emitter:
    """Buffers events and publishes them from one background thread, so a job never waits
    on EventBridge: batches of up to ten, at least every ``interval`` seconds."""

    def __init__(self, sink: Sink, interval: float = 0.2,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.sink = sink
        self.interval = interval
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-events")
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("job event dropped: %d waiting", self._queue.qsize())

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is buffered, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[dict[str, Any]] = []
            try:
                item = self._queue.get(timeout=self.interval)
                while True:
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    if len(batch) >= _BATCH:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if batch:
                try:
                    self.sink.publish(batch)
                except Exception as exc:  # logged; the jobs carry on
                    log.warning("%d job event(s) not published: %s: %s", len(batch),
                                type(exc).__name__, exc)
                    if self._on_error is not None:
                        self._on_error(exc)
