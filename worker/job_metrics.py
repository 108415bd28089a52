"""The worker's job metrics, as CloudWatch EMF lines on stdout (Powertools' ``EphemeralMetrics``).

In ECS the container's stdout goes to CloudWatch Logs through the ``awslogs`` driver, and
CloudWatch turns every EMF line into metric data points; nothing else is needed. Per job
name (catalogue names only, so the number of metrics stays bounded):

- ``JobsFailed`` (Count) by ``job`` and ``kind``: one per failed try. ``permanent``: the
  error is not worth retrying (``PermanentJobError``, invalid input); ``transient``: any
  other error, retried while tries remain;
- ``DeadLetters`` (Count) by ``job``: jobs that failed for good (either kind);
- ``JobDuration`` (Milliseconds) by ``job``: each finished try, succeeded or failed;
- ``QueueWait`` (Milliseconds) by ``job``: from the moment a job could start (enqueued, or
  its ``run_at``) to its first try.

Every metric also carries ``queue`` and is published once more without ``job`` (``queue``,
plus ``kind`` for ``JobsFailed``), so alarms and the dashboard read one series per queue.

Values are buffered and written every ``interval`` seconds from a background thread (and at
shutdown): counts as one summed value, durations as value arrays of at most
:data:`MAX_VALUES`, so a busy worker writes a few lines per interval, not one per job. Each
line is one ``write`` of at most a few KiB, so lines from several worker processes sharing the
container's stdout never interleave (a pipe write up to 4 KiB is atomic).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import defaultdict
from typing import TextIO

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared.jobs import CATALOGUE

log = logging.getLogger("offload.worker")

# Values per metric per line: keeps a line with two value arrays under 4 KiB.
MAX_VALUES = 50
# The job dimension of tasks outside the catalogue (a benchmark's no-op, an operator's one-off).
OTHER_JOB = "other"

Dimensions = tuple[tuple[str, str], ...]


def job_dimension(name: str) -> str:
    """``name`` when it is a catalogue job, else :data:`OTHER_JOB` (bounded cardinality)."""
    return name if name in CATALOGUE else OTHER_JOB


class JobMetrics:
    """Buffers job metrics and writes them as EMF (``start`` / ``close`` bound its thread)."""

    def __init__(self, namespace: str, queue: str, interval: float = 10.0,
                 out: TextIO | None = None) -> None:
        self.namespace = namespace
        self.queue = queue
        self.interval = interval
        self._out = out  # None: sys.stdout at write time
        self._lock = threading.Lock()
        self._counts: dict[Dimensions, dict[str, float]] = defaultdict(dict)
        self._samples: dict[Dimensions, dict[str, list[float]]] = defaultdict(dict)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- recording (from the event loop; a lock, no I/O) ------------------------------

    def waited(self, job: str, milliseconds: float) -> None:
        self._sample((("job", job_dimension(job)),), "QueueWait", max(0.0, milliseconds))

    def ran(self, job: str, milliseconds: float) -> None:
        self._sample((("job", job_dimension(job)),), "JobDuration", max(0.0, milliseconds))

    def failed(self, job: str, *, permanent: bool) -> None:
        kind = "permanent" if permanent else "transient"
        self._count((("job", job_dimension(job)), ("kind", kind)), "JobsFailed")

    def dead_lettered(self, job: str) -> None:
        self._count((("job", job_dimension(job)),), "DeadLetters")

    def _sample(self, dims: Dimensions, metric: str, value: float) -> None:
        # To 0.1 ms: finer is noise, and shorter numbers keep a line well under 4 KiB.
        with self._lock:
            self._samples[dims].setdefault(metric, []).append(round(value, 1))

    def _count(self, dims: Dimensions, metric: str) -> None:
        with self._lock:
            found = self._counts[dims]
            found[metric] = found.get(metric, 0.0) + 1

    # --- writing ----------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything buffered; the number of EMF lines written."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(dict)
            samples, self._samples = self._samples, defaultdict(dict)
        lines = [line for dims in {*counts, *samples}
                 for line in self._documents(dims, counts.get(dims, {}), samples.get(dims, {}))]
        if lines:
            out = self._out or sys.stdout
            for line in lines:
                out.write(line + "\n")  # one write per line: see the module docstring
                out.flush()
        return len(lines)

    def _documents(self, dims: Dimensions, counts: dict[str, float],
                   samples: dict[str, list[float]]) -> list[str]:
        """EMF lines for one dimension set: the counts in the first, the samples spread so
        that no line holds more than MAX_VALUES values of one metric."""
        chunks = max([1, *((len(v) + MAX_VALUES - 1) // MAX_VALUES for v in samples.values())])
        lines: list[str] = []
        for i in range(chunks):
            emf = EphemeralMetrics(namespace=self.namespace, service="")  # "": no service dimension
            emf.add_dimension(name="queue", value=self.queue)
            for name, label in dims:
                emf.add_dimension(name=name, value=label)
            # The same data once more per queue (and kind), without the job.
            emf.add_dimensions(queue=self.queue, **{k: v for k, v in dims if k != "job"})
            if i == 0:
                for metric, total in counts.items():
                    emf.add_metric(name=metric, unit=MetricUnit.Count, value=total)
            for metric, values in samples.items():
                for sample in values[i * MAX_VALUES:(i + 1) * MAX_VALUES]:
                    emf.add_metric(name=metric, unit=MetricUnit.Milliseconds, value=sample)
            if emf.metric_set:
                lines.append(json.dumps(emf.serialize_metric_set(), separators=(",", ":")))
        return lines

    # --- the background thread --------------------------------------------------------

    def start(self) -> None:
        """Write every ``interval`` seconds from a daemon thread, until :meth:`close`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-metrics")
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and write what is left."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception as exc:  # metrics are never worth a stopped worker
                log.warning("job metrics not written: %s: %s", type(exc).__name__, exc)
