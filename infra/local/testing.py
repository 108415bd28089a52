"""Test your jobs the way Offload tests its own: real Redis, moto's S3/SES over HTTP.

Add ``pytest_plugins = ["infra.local.testing"]`` to your top-level ``conftest.py``; then::

    async def test_my_job(offload: Offload) -> None:
        result = await offload.run_job("my_job", {"text": "hi"})           # the function, directly
        view = await offload.enqueue_and_wait("my_job", {"text": "hi"})    # through a real worker
        assert view.status == "done"
        assert offload.sent_emails(to="ada@example.org")
        assert offload.s3_objects("reports/")

Fixtures (each test gets its own queue, buckets and database, so tests never see each
other's data):

- ``offload_redis_url``: a private ``redis-server`` on a free port for the session (or
  ``REDIS_URL`` when no ``redis-server`` is installed); never the machine's shared one.
- ``offload_aws_endpoint``: moto's server over HTTP for the session (S3, SES).
- ``offload_settings``: settings for one test, its buckets created and sender verified.
- ``offload_db``: beanie on the in-memory MongoDB stand-in (``MONGODB_URI`` when set).
- ``offload_queue``: a connected :class:`~shared.queue.JobQueue` (what the Lambdas use).
- ``offload_worker``: a real Streaq worker running every catalogue task during the test.
- ``offload``: an :class:`Offload` with the helpers above, starting the worker only when
  :meth:`Offload.enqueue_and_wait` first needs it.

Tests using the async fixtures run on anyio (``pytestmark = pytest.mark.anyio``); this
plugin sets its ``anyio_backend`` to asyncio.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from streaq import Worker

    from shared.config import Settings
    from shared.queue import JobQueue, JobView
    from worker.retry_policy import Attempt, JobContext

DEFAULT_OWNER = "test-user"
# The worker's concurrency in tests: enough for pipelines and parallel jobs, small enough
# for a 2-core CI machine.
TEST_WORKER_CONCURRENCY = 8


# --- plain helpers (usable without the fixtures) --------------------------------------


def test_settings(redis_url: str, aws_endpoint: str, **overrides: Any) -> Settings:
    """Settings for one test: its own queue, buckets and database; AWS is ``aws_endpoint``.
    The buckets are created and the sender verified."""
    from shared.aws import s3_client, ses_client
    from shared.config import Settings

    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "env": "test",
        "redis_url": redis_url,
        "queue_name": f"test-{tag}",
        "aws_endpoint_url": aws_endpoint,
        "uploads_bucket": f"uploads-{tag}",
        "results_bucket": f"results-{tag}",
        "ses_sender": "no-reply@offload.example.com",
        "mongodb_uri": os.environ.get("MONGODB_URI", ""),
        "mongodb_database": f"offload_test_{tag}",
        "worker_grace_period_seconds": 5,
        "fetch_allowed_hosts": ("127.0.0.1",),
    }
    settings = Settings(**{**values, **overrides})
    s3 = s3_client(settings)
    for bucket in (settings.uploads_bucket, settings.results_bucket):
        s3.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": settings.aws_region},  # type: ignore[typeddict-item]
        )
    ses_client(settings).verify_email_identity(EmailAddress=settings.ses_sender)
    return settings


def sent_emails(aws_endpoint: str, to: str | None = None) -> list[dict[str, Any]]:
    """Every message moto's SES accepted (only those to ``to`` when given), oldest first:
    dicts with ``id``, ``source``, ``destinations``, ``subject``, ``body``."""
    url = f"{aws_endpoint}/moto-api/data.json"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP endpoint: {aws_endpoint!r}")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - checked above
        messages: list[dict[str, Any]] = json.load(response)["ses"].get("Message", [])
    if to is None:
        return messages
    return [m for m in messages if to in m["destinations"].get("ToAddresses", [])]


def s3_objects(settings: Settings, prefix: str = "", bucket: str | None = None) -> dict[str, bytes]:
    """The objects under ``prefix`` in ``bucket`` (default: the results bucket), key -> bytes."""
    from shared.aws import s3_client

    s3 = s3_client(settings)
    name = bucket or settings.results_bucket
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = s3.get_object(Bucket=name, Key=item["Key"])["Body"].read()
    return found


async def run_job(settings: Settings, name: str, payload: dict[str, Any] | None = None, *,
                  job: JobContext | None = None, attempt: Attempt | None = None) -> Any:
    """Run catalogue job ``name``'s function directly, with a real worker context (S3, SES,
    HTTP, MongoDB, Redis from ``settings``), acting for ``job`` (default: owner
    ``test-user``) on ``attempt`` (default: try 1 of the job's ``max_tries``).

    The input is validated as the worker does (pydantic.ValidationError when invalid); no
    queue, no retries: a job's exception propagates. MongoDB must be initialised
    (``offload_db``) for jobs that use it.
    """
    from shared.jobs import CATALOGUE
    from shared.queue import JobQueue
    from worker.app import load_task_modules
    from worker.context import open_context
    from worker.retry_policy import ATTEMPT, JOB, Attempt, JobContext

    spec = CATALOGUE.get(name)
    if spec is None or spec.is_pipeline:
        raise KeyError(f"{name!r} is not a task in the job catalogue")
    impl = load_task_modules()[name]
    inp = spec.validate(payload or {})
    async with JobQueue(settings) as queue, open_context(settings, queue.redis) as ctx:
        job_token = JOB.set(job or JobContext(owner=DEFAULT_OWNER))
        attempt_token = ATTEMPT.set(attempt or Attempt(1, spec.max_tries))
        try:
            return await impl(ctx, inp)
        finally:
            ATTEMPT.reset(attempt_token)
            JOB.reset(job_token)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Any]:
    """beanie initialised for ``settings`` (the in-memory stand-in unless ``mongodb_uri``
    is set) for the block; the client."""
    from shared.db import close_db, init_db

    client = await init_db(settings)
    try:
        yield client
    finally:
        await close_db(client)


@asynccontextmanager
async def running_worker(settings: Settings,
                         concurrency: int = TEST_WORKER_CONCURRENCY) -> AsyncIterator[Worker[Any]]:
    """A real Streaq worker for every catalogue task, running in this event loop (so it sees
    the same in-memory MongoDB as the test) until the block ends."""
    import anyio

    from worker.app import build_worker

    w = build_worker(settings, concurrency=concurrency)
    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        try:
            yield w
        finally:
            # Let jobs the test left running finish (bounded), so stopping the worker does
            # not cut their Redis writes mid-pipeline.
            with anyio.move_on_after(10):
                while w.running():  # noqa: ASYNC110 - Streaq exposes no idle event
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


# --- the helper object -----------------------------------------------------------------


@dataclass
class Offload:
    """One test's Offload: its settings, a queue client, and a worker started on demand."""

    settings: Settings
    queue: JobQueue
    aws_endpoint: str
    owner: str = DEFAULT_OWNER
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _worker: Worker[Any] | None = None

    async def run_job(self, name: str, payload: dict[str, Any] | None = None, *,
                      owner: str | None = None, attempt: Attempt | None = None) -> Any:
        """:func:`run_job` with this test's settings, acting for ``owner``."""
        from worker.retry_policy import JobContext

        return await run_job(self.settings, name, payload,
                             job=JobContext(owner=owner or self.owner), attempt=attempt)

    async def start_worker(self) -> Worker[Any]:
        """The test's worker, started on first use and stopped with the fixture."""
        if self._worker is None:
            self._worker = await self._stack.enter_async_context(running_worker(self.settings))
        return self._worker

    async def enqueue_and_wait(self, name: str, payload: dict[str, Any] | None = None, *,
                               owner: str | None = None, timeout: float = 30,  # noqa: ASYNC109
                               **enqueue: Any) -> JobView:
        """Enqueue ``name`` as the API does, run it on a real worker, and return its finished
        view (``status`` done/failed/aborted, ``result`` or ``error``, ``tries``).
        ``enqueue`` takes :meth:`JobQueue.enqueue`'s options (``delay_seconds``,
        ``idempotency_key``, ``profile``, ...). TimeoutError when not finished in time."""
        await self.start_worker()
        who = owner or self.owner
        job = await self.queue.enqueue(name, payload or {}, owner=who, **enqueue)
        view = await self.queue.wait(job.id, who, timeout=timeout)
        if view.status not in ("done", "failed", "aborted"):
            raise TimeoutError(f"job {name} ({job.id}) is still {view.status} after {timeout} s")
        return view

    def sent_emails(self, to: str | None = None) -> list[dict[str, Any]]:
        """:func:`sent_emails` on this test's moto server."""
        return sent_emails(self.aws_endpoint, to)

    def s3_objects(self, prefix: str = "", bucket: str | None = None) -> dict[str, bytes]:
        """:func:`s3_objects` in this test's buckets (default: the results bucket)."""
        return s3_objects(self.settings, prefix, bucket)

    async def aclose(self) -> None:
        await self._stack.aclose()


# --- pytest fixtures --------------------------------------------------------------------


@pytest.fixture(scope="session")
def offload_redis_url() -> Iterator[str]:
    """A private redis-server for the session (``REDIS_URL`` when none is installed)."""
    from infra.local.private_redis import RedisServer

    if shutil.which("redis-server"):
        server = RedisServer()
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
    elif os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]  # per-test queue names keep tests apart; never flushed
    else:
        pytest.fail("no redis-server on PATH and no REDIS_URL: install Redis >= 7")


@pytest.fixture(scope="session")
def offload_aws_endpoint() -> Iterator[str]:
    """moto's server (S3, SES, ...) over HTTP on a free loopback port, for the session."""
    from moto.server import ThreadedMotoServer

    from infra.local.private_redis import free_port

    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "eu-west-1")):
        os.environ.setdefault(var, value)  # boto3 must never find real credentials
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def offload_settings(offload_redis_url: str, offload_aws_endpoint: str) -> Settings:
    return test_settings(offload_redis_url, offload_aws_endpoint)


@pytest.fixture
async def offload_db(offload_settings: Settings) -> AsyncIterator[Any]:
    async with database(offload_settings) as client:
        yield client


@pytest.fixture
async def offload_queue(offload_settings: Settings) -> AsyncIterator[JobQueue]:
    from shared.queue import JobQueue

    async with JobQueue(offload_settings) as queue:
        yield queue


@pytest.fixture
async def offload_worker(offload_settings: Settings, offload_db: Any) -> AsyncIterator[Worker[Any]]:
    async with running_worker(offload_settings) as w:
        yield w


@pytest.fixture
async def offload(offload_settings: Settings, offload_db: Any, offload_queue: JobQueue,
                  offload_aws_endpoint: str) -> AsyncIterator[Offload]:
    harness = Offload(offload_settings, offload_queue, offload_aws_endpoint)
    try:
        yield harness
    finally:
        await harness.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
