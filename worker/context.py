"""The worker's per-process resources, opened once by the lifespan and shared by jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.config import Settings

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ses import SESClient

    from shared.blobs import BlobService
    from shared.email import Mailer


@dataclass
class WorkerContext:
    """What every job may use: settings, AWS clients, the HTTP client, blob storage, mail.

    boto3 clients are thread-safe for calls, so jobs run them off the event loop with
    ``anyio.to_thread.run_sync`` and share one client per process.
    """

    settings: Settings
    s3: S3Client
    ses: SESClient
    http: httpx.AsyncClient
    blobs: BlobService
    mailer: Mailer
    mongo: Any
    redis: Any  # the worker's coredis client (dead letters, job metadata)


@asynccontextmanager
async def open_context(settings: Settings, redis: Any) -> AsyncIterator[WorkerContext]:
    """Open every client once per worker process; close them on shutdown."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    import httpx

    from shared.aws import s3_client, ses_client
    from shared.blobs import BlobService
    from shared.db import close_db, init_db
    from shared.email import Mailer

    async with AsyncExitStack() as stack:
        s3 = s3_client(settings)
        ses = ses_client(settings)
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                timeout=httpx.Timeout(settings.fetch_timeout_seconds),
                follow_redirects=False,  # redirects are followed by hand, each re-checked
                headers={"user-agent": "offload-worker/0.1"},
                # No proxy from the environment (it would bypass the fetch job's IP pinning)
                # and no cookie jar shared between unrelated fetches.
                trust_env=False,
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        )
        mongo = await init_db(settings)
        stack.push_async_callback(close_db, mongo)
        yield WorkerContext(
            settings=settings,
            s3=s3,
            ses=ses,
            http=http,
            blobs=BlobService(s3, settings),
            mailer=Mailer(ses, settings.ses_sender, settings.ses_configuration_set),
            mongo=mongo,
            redis=redis,
        )
