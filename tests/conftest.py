"""Session services for the suite: a private redis-server, moto's server over HTTP.

Never the machine's shared Redis: each session starts its own on a free port (or uses
``REDIS_URL`` when no ``redis-server`` binary exists), and every test gets its own queue
name, buckets and Mongo database, so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from infra.local.private_redis import RedisServer, free_port
from shared.config import Settings
from tests.leftovers import become_subreaper, kill_all, live_descendants

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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server"):
        server = RedisServer()
        server.start()
        yield server.url
        server.stop()
    elif os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]  # per-test queue names keep us apart; never flushed
    else:
        pytest.fail("no redis-server on PATH and no REDIS_URL: install Redis >= 7")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(redis_url: str, moto_endpoint: str) -> Settings:
    """Settings for one test: its own queue, buckets and database; AWS is moto's server."""
    from shared.aws import s3_client, ses_client

    tag = uuid.uuid4().hex[:10]
    s = Settings(
        env="test",
        redis_url=redis_url,
        queue_name=f"test-{tag}",
        aws_endpoint_url=moto_endpoint,
        uploads_bucket=f"uploads-{tag}",
        results_bucket=f"results-{tag}",
        ses_sender="no-reply@offload.example.com",
        mongodb_uri=os.environ.get("MONGODB_URI", ""),
        mongodb_database=f"offload_test_{tag}",
        worker_grace_period_seconds=5,
        fetch_allowed_hosts=("127.0.0.1",),
    )
    s3 = s3_client(s)
    for bucket in (s.uploads_bucket, s.results_bucket):
        s3.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": s.aws_region},  # type: ignore[typeddict-item]
        )
    ses_client(s).verify_email_identity(EmailAddress=s.ses_sender)
    return s


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[Any]:
    """beanie initialised on the in-memory stand-in (or MONGODB_URI when set)."""
    from shared.db import close_db, init_db

    client = await init_db(settings)
    yield client
    await close_db(client)


@pytest.fixture
async def worker(settings: Settings, mongo: Any) -> AsyncIterator[Any]:
    """A real Streaq worker running every catalogue task for the test's duration.

    It shares the test's event loop, so it sees the same in-memory MongoDB as the test.
    """
    from worker.app import build_worker

    w = build_worker(settings, concurrency=8)
    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        yield w
        # Let jobs a test left running finish (bounded), so cancelling the worker does not
        # cut their Redis writes mid-pipeline.
        with anyio.move_on_after(10):
            while w.running():
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[Any]:
    """A connected queue client (what the Lambdas use)."""
    from shared.queue import JobQueue

    async with JobQueue(settings) as q:
        yield q
