"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def address(name: str) -> str:
    """A recipient no other test (moto's SES outlives a test) has written to."""
    local = "".join(c for c in name.lower() if c.isalnum())
    return f"{local}-{uuid.uuid4().hex[:8]}@example.org"


@contextmanager
def on_try(tries: int, max_tries: int) -> Iterator[None]:
    """Run the enclosed job code as try ``tries`` of ``max_tries``, as the retry policy
    does for each run (jobs read it with ``current_attempt()``)."""
    from worker.retry_policy import ATTEMPT, Attempt

    token = ATTEMPT.set(Attempt(tries, max_tries))
    try:
        yield
    finally:
        ATTEMPT.reset(token)
