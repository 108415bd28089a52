"""Housekeeping jobs through the queue: expired sessions, abandoned pending blobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.aws import s3_client
from shared.config import Settings
from shared.models import Blob, BlobStatus, Session, utcnow
from shared.s3 import object_exists
from worker.tasks import cleanup

pytestmark = pytest.mark.anyio


async def test_cleanup_deletes_expired_sessions_only(worker: Any, queue: Any) -> None:
    # GIVEN three expired sessions and two live ones
    now = utcnow()
    for offset in (timedelta(days=-30), timedelta(minutes=-1), timedelta(seconds=-5),
                   timedelta(minutes=5), timedelta(days=7)):
        await Session(user_id="u", token_hash=f"h{offset}", expires_at=now + offset).insert()
    # WHEN the cleanup runs
    job = await queue.enqueue("cleanup_expired_sessions", {"older_than_hours": 24}, owner="u1")
    view = await queue.wait(job.id, "u1", timeout=30)
    # THEN the three expired ones are gone
    assert view.status == "done", view.error
    assert view.result["deleted"] == 3
    left = await Session.find_all().to_list()
    assert sorted(s.expires_at > now for s in left) == [True, True]
    # AND a second run finds nothing more
    again = await queue.wait(
        (await queue.enqueue("cleanup_expired_sessions", {}, owner="u1")).id, "u1", timeout=30
    )
    assert again.result["deleted"] == 0


async def make_blob(settings: Settings, key: str, status: BlobStatus, age: timedelta,
                    *, with_object: bool) -> Blob:
    if with_object:
        s3_client(settings).put_object(Bucket=settings.results_bucket, Key=key, Body=b"part")
    stamp = utcnow() - age
    blob = Blob(bucket=settings.results_bucket, key=key, content_type="text/plain",
                status=status, created_at=stamp, updated_at=stamp)
    await blob.insert()
    return blob


async def test_sweep_marks_stale_pending_blobs_and_deletes_their_objects(
    worker: Any, queue: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two, so three stale blobs take two pages.
    monkeypatch.setattr(cleanup, "SWEEP_PAGE_SIZE", 2)
    day = timedelta(hours=25)
    # GIVEN stale pending blobs (with and without a partial object) and others to keep
    stale = [
        await make_blob(settings, "tmp/stale-1", "pending", day, with_object=True),
        await make_blob(settings, "tmp/stale-2", "pending", day, with_object=False),
        await make_blob(settings, "tmp/stale-3", "pending", 3 * day, with_object=True),
    ]
    fresh = await make_blob(settings, "tmp/fresh", "pending", timedelta(hours=1),
                            with_object=True)
    done = await make_blob(settings, "tmp/done", "uploaded", 3 * day, with_object=True)
    # WHEN the sweep runs for blobs pending over 24 h
    job = await queue.enqueue("sweep_pending_blobs", {"older_than_hours": 24}, owner="u1")
    view = await queue.wait(job.id, "u1", timeout=30)
    # THEN the three stale ones are errored with the reason, and their objects are gone
    assert view.status == "done", view.error
    assert view.result["found"] == 3
    assert view.result["marked_error"] == 3
    s3 = s3_client(settings)
    for blob in stale:
        stored = await Blob.get(blob.id)
        assert stored is not None
        assert (stored.status, stored.error) == ("error", "abandoned: pending for over 24 h")
        assert stored.updated_at > blob.updated_at
        assert not object_exists(s3, settings.results_bucket, blob.key)
    # AND the fresh pending and the uploaded blob are untouched, objects included
    for blob in (fresh, done):
        stored = await Blob.get(blob.id)
        assert stored is not None
        assert stored.status == blob.status
        assert object_exists(s3, settings.results_bucket, blob.key)
    # AND a second sweep has nothing left to do
    again = await queue.wait(
        (await queue.enqueue("sweep_pending_blobs", {}, owner="u1")).id, "u1", timeout=30
    )
    assert again.result["found"] == again.result["marked_error"] == 0
