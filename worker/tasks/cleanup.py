"""Housekeeping jobs: expired sign-in sessions, and blobs whose upload never finished."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
from beanie import PydanticObjectId
from beanie.operators import In
from pydantic import BaseModel, ConfigDict, Field
from pymongo.results import UpdateResult

from shared import s3 as s3ops
from shared.jobs import SweepInput
from shared.models import Blob, Session, utcnow
from worker.context import WorkerContext
from worker.tasks.base import job

log = logging.getLogger("offload.worker.cleanup")

# Blobs handled per round of the sweep: one query, their S3 deletes, one update_many.
SWEEP_PAGE_SIZE = 200


@job("cleanup_expired_sessions")
async def cleanup_expired_sessions(ctx: WorkerContext, inp: SweepInput) -> dict[str, Any]:
    """Delete every session whose ``expires_at`` has passed, in one ``delete_many``.

    ``older_than_hours`` is not used here: an expired session can never be used again, so
    there is nothing to gain from keeping it for a grace period.
    """
    now = utcnow()
    result = await Session.find(Session.expires_at < now).delete()
    deleted = result.deleted_count if result is not None else 0
    log.info("deleted %d expired sessions", deleted)
    return {"deleted": deleted, "expired_before": now.isoformat()}


class _PendingBlob(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: PydanticObjectId = Field(alias="_id")
    bucket: str
    key: str


def _delete_objects(s3: Any, blobs: list[_PendingBlob]) -> None:
    # Runs in a worker thread; a missing object or bucket is already the goal.
    for blob in blobs:
        s3ops.delete_object(s3, blob.bucket, blob.key)


@job("sweep_pending_blobs")
async def sweep_pending_blobs(ctx: WorkerContext, inp: SweepInput) -> dict[str, Any]:
    """Blobs left ``pending`` for over ``older_than_hours`` (a worker died mid-upload):
    delete whatever part of their object reached S3, then mark them ``error``.

    Objects are deleted before the records change, so a sweep that fails half-way leaves
    the rest ``pending`` and its retry finds them again. The update repeats the stale
    condition, so a blob that was re-uploaded meanwhile is not marked.
    """
    cutoff = utcnow() - timedelta(hours=inp.older_than_hours)
    reason = f"abandoned: pending for over {inp.older_than_hours} h"
    marked = found = 0
    after: PydanticObjectId | None = None
    while True:
        query: dict[str, Any] = {"status": "pending", "updated_at": {"$lt": cutoff}}
        if after is not None:
            query["_id"] = {"$gt": after}
        page = await (Blob.find(query).sort("+_id").limit(SWEEP_PAGE_SIZE)
                      .project(_PendingBlob).to_list())
        if not page:
            break
        found += len(page)
        await anyio.to_thread.run_sync(partial(_delete_objects, ctx.s3, page))
        result = await Blob.find(
            In(Blob.id, [b.id for b in page]), Blob.status == "pending", Blob.updated_at < cutoff
        ).update_many({"$set": {"status": "error", "error": reason, "updated_at": utcnow()}})
        marked += result.modified_count if isinstance(result, UpdateResult) else 0
        if len(page) < SWEEP_PAGE_SIZE:
            break
        after = page[-1].id
    log.info("swept %d stale pending blobs (%d marked error)", found, marked)
    return {"found": found, "marked_error": marked, "older_than": cutoff.isoformat()}
