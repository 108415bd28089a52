"""Your jobs' catalogue entries, one module per job, each defining ``SPEC = JobSpec(...)``
and its input model. ``offload new-job NAME`` writes one; ``shared.jobs`` adds them all to
``CATALOGUE`` (docs/JOBS.md walks through it)."""
