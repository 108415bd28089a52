"""Offload's own Redis keys (``offload:{queue}:...``), job ids and the clock they share.

Streaq's keys are Streaq's business: Offload reads and writes them only through its
``Worker`` API. What lives here is what Offload itself remembers beside them.
"""

from __future__ import annotations

import hashlib
import time
import uuid


def deterministic_job_id(*parts: str) -> str:
    """A job id derived from ``parts``: the same parts always name the same job."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4).hex


def now_ms() -> int:
    return round(time.time() * 1000)


class Keys:
    """Offload's own Redis keys for one queue."""

    def __init__(self, queue_name: str) -> None:
        self.prefix = f"offload:{queue_name}:"

    def job(self, job_id: str) -> str:
        """The job's metadata (JSON: owner, name, payload, digest, published...)."""
        return f"{self.prefix}job:{job_id}"

    def publish_lock(self, job_id: str) -> str:
        """Held (briefly) by the one process allowed to publish the job."""
        return f"{self.job(job_id)}:lock"

    def run(self, job_id: str) -> str:
        """The worker's record of a long run (start time, try)."""
        return f"{self.job(job_id)}:run"

    def outcome(self, job_id: str) -> str:
        """A finished job's view, once read (it no longer changes)."""
        return f"{self.job(job_id)}:outcome"

    def aborted(self, job_id: str) -> str:
        """When the job was aborted (Streaq keeps no result for a dropped scheduled task)."""
        return f"{self.job(job_id)}:aborted"

    def progress(self, job_id: str) -> str:
        """The running job's last reported progress (JSON: fraction, message, time)."""
        return f"{self.job(job_id)}:progress"

    def owner_jobs(self, owner: str) -> str:
        """The owner's jobs: a sorted set of job id -> created time (ms), for listing."""
        return f"{self.prefix}jobs:{owner}"

    def unfinished(self, owner: str) -> str:
        """The owner's unfinished jobs: job id -> the latest time it could still run (ms)."""
        return f"{self.prefix}unfinished:{owner}"

    def dead_index(self, owner: str) -> str:
        return f"{self.prefix}dead:{owner}"

    def dead_letter(self, job_id: str) -> str:
        return f"{self.prefix}deadletter:{job_id}"

    def replication_probe(self) -> str:
        """Written right before a replica wait (shared/queue/replication.py)."""
        return f"{self.prefix}replication-probe"

    def workers(self) -> str:
        """Live workers: a sorted set of worker id -> last announcement (ms)."""
        return f"{self.prefix}workers"
