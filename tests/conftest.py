"""Session services for the suite: a private redis-server, moto's server over HTTP.

Never the machine's shared Redis: each session starts its own on a free port (or uses
``REDIS_URL`` when no ``redis-server`` binary exists), and every test gets its own queue
name, buckets and Mongo database, so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from tests.leftovers import become_subreaper, kill_all, live_descendants

pytest_plugins = ["infra.local.testing"]

EVENTS = Path(__file__).parent / "events"

# boto3 must never find real credentials or a real region here.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="eu-west-1",
)
for _var in list(os.environ):
    if _var.startswith("OFFLOAD_"):
        del os.environ[_var]


def pytest_sessionstart(session: pytest.Session) -> None:
    become_subreaper()  # orphans of the tests' processes stay visible to the check below


@pytest.hookimpl(trylast=True)  # after pytest's own teardown of session fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The suite leaves no process behind: any live descendant is listed, killed, and
    fails the run."""
    leftovers = live_descendants(os.getpid())
    if not leftovers:
        return
    print(f"\n{len(leftovers)} process(es) left running by the tests (killed):", file=sys.stderr)
    for pid, command in leftovers:
        print(f"  pid {pid}: {command[:200]}", file=sys.stderr)
    kill_all(leftovers)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def load_event(name: str) -> dict[str, Any]:
    """A real AWS event shape from tests/events/."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


# The suite's services and helpers are the public testing module's (infra.local.testing), so
# what users import to test their own jobs is what runs every test here.
@pytest.fixture(scope="session")
def redis_url(offload_redis_url: str) -> str:
    return offload_redis_url


@pytest.fixture(scope="session")
def moto_endpoint(offload_aws_endpoint: str) -> str:
    return offload_aws_endpoint


# Built on `settings`, which test modules override (fetch limits, S3 options).
@pytest.fixture
def settings(offload_settings: Settings) -> Settings:
    """Settings for one test: its own queue, buckets and database; AWS is moto's server."""
    return offload_settings


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[Any]:
    """beanie initialised on the in-memory stand-in (or MONGODB_URI when set)."""
    from infra.local.testing import database

    async with database(settings) as client:
        yield client


@pytest.fixture
async def worker(settings: Settings, mongo: Any) -> AsyncIterator[Any]:
    """A real Streaq worker running every catalogue task for the test's duration (in the
    test's event loop, so it sees the same in-memory MongoDB as the test)."""
    from infra.local.testing import running_worker

    async with running_worker(settings) as w:
        yield w


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Any]:
    """A connected queue client (what the Lambdas use)."""
    from shared.queue import JobQueue

    async with JobQueue(settings) as q:
        yield q
