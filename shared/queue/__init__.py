"""The queue client: enqueue catalogue jobs by name, read their status, abort, retry.

A package of small modules (docs/QUEUE.md): :mod:`.client` (``JobQueue``), :mod:`.publish`
(publishing a job once), :mod:`.views`, :mod:`.outcomes` (finished views remembered),
:mod:`.dead_letters`, :mod:`.stats`,
:mod:`.presence` (live workers), :mod:`.keys` (Offload's own keys), :mod:`.meta` (per-job
metadata), :mod:`.connection` (the Streaq client) and :mod:`.wire` (the JSON wire format).
"""

from shared.queue.client import JobQueue
from shared.queue.connection import make_streaq
from shared.queue.dead_letters import DeadLetter, record_dead_letter
from shared.queue.keys import Keys, deterministic_job_id, now_ms
from shared.queue.stats import QueueStats
from shared.queue.views import FINISHED, EnqueuedJob, JobState, JobView

__all__ = [
    "FINISHED",
    "DeadLetter",
    "EnqueuedJob",
    "JobQueue",
    "JobState",
    "JobView",
    "Keys",
    "QueueStats",
    "deterministic_job_id",
    "make_streaq",
    "now_ms",
    "record_dead_letter",
]
