"""Blob storage for jobs: S3 objects, each tracked by a ``Blob`` document.

Lifecycle: ``pending`` is recorded *before* the upload, so a worker that dies mid-upload
leaves a record the ``sweep_pending_blobs`` job can find; then ``uploaded`` with size and
SHA-256, or ``error`` with the reason (and the exception re-raised); ``deleted`` once the
object is removed. One document per (bucket, key): re-putting updates it, which keeps
at-least-once job runs idempotent.

S3 calls are blocking (boto3), so they run in a worker thread. S3 errors surface as
described in :mod:`shared.s3` (``ObjectMissing``, ``S3Unavailable``, ...).
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import anyio

from shared import s3 as s3ops
from shared.blob_ref import BlobRef
from shared.config import Settings
from shared.errors import PermanentJobError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from shared.models import Blob, BlobStatus

MAX_KEY_BYTES = 1024


class InvalidBlobKey(PermanentJobError, ValueError):
    """The key is empty, too long or not valid UTF-8 text for S3."""


def _check_key(key: str) -> None:
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidBlobKey(f"S3 keys are 1..{MAX_KEY_BYTES} bytes of UTF-8; got {key!r:.80}")
    if key.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidBlobKey(f"S3 key must not start with '/' or hold control chars: {key!r:.80}")


class BlobLabels(TypedDict, total=False):
    """Where a put object goes and what its ``Blob`` says about it."""

    bucket: str | None  # default: the results bucket
    owner: str | None  # the caller the object belongs to
    kind: str | None  # what it is ("report", "thumbnail"...), for listing


def blob_ref(blob: Blob, name: str) -> dict[str, Any]:
    """The result entry that offers ``blob`` for download as ``name`` (see ``BlobRef``)."""
    return BlobRef(name, blob.bucket, blob.key, blob.content_type, blob.size or 0).to_json()


class BlobService:
    """Put, get, delete and share S3 objects, recording each one as a ``Blob``."""

    def __init__(self, s3: S3Client, settings: Settings) -> None:
        self._s3 = s3
        self._settings = settings

    async def put_bytes(self, key: str, data: bytes, content_type: str,
                        **labels: Unpack[BlobLabels]) -> Blob:
        """Upload ``data`` (by default to the results bucket); returns its ``Blob``."""
        bucket = labels.get("bucket") or self._settings.results_bucket
        _check_key(key)
        digest = hashlib.sha256(data).digest()
        blob = await self._record_pending(bucket, key, {
            "content_type": content_type, "owner": labels.get("owner"),
            "kind": labels.get("kind"), "size": len(data), "sha256": digest.hex(),
        })
        try:
            info = await anyio.to_thread.run_sync(
                partial(s3ops.put_object, self._s3, bucket, key, data, content_type,
                        sha256=digest)
            )
        except Exception as exc:
            await self._transition(blob, "error", error=f"{type(exc).__name__}: {exc}"[:1000])
            raise
        blob.size, blob.sha256 = info.size, info.sha256
        await self._transition(blob, "uploaded")
        return blob

    async def put_file(self, key: str, path: Path, content_type: str,
                       **labels: Unpack[BlobLabels]) -> Blob:
        """Upload a local file's contents; see :meth:`put_bytes`."""
        data = await anyio.to_thread.run_sync(path.read_bytes)
        return await self.put_bytes(key, data, content_type, **labels)

    async def get_bytes(self, bucket: str, key: str,
                        max_bytes: int | None = None) -> tuple[bytes, str]:
        """The object's bytes and content type (``ObjectMissing`` / ``ObjectTooLarge``)."""
        return await anyio.to_thread.run_sync(
            partial(s3ops.get_object, self._s3, bucket, key, max_bytes)
        )

    async def delete(self, bucket: str, key: str) -> None:
        """Delete the object (idempotent) and mark its Blob, if any, ``deleted``."""
        from shared.models import Blob

        await anyio.to_thread.run_sync(partial(s3ops.delete_object, self._s3, bucket, key))
        blob = await Blob.find_one(Blob.bucket == bucket, Blob.key == key)
        if blob is not None and blob.status != "deleted":
            await self._transition(blob, "deleted")

    async def exists(self, bucket: str, key: str) -> bool:
        """Whether S3 holds the object now (S3 is the truth, not the Blob record)."""
        return await anyio.to_thread.run_sync(
            partial(s3ops.object_exists, self._s3, bucket, key)
        )

    async def presigned_get(self, bucket: str, key: str, expires_seconds: int = 3600) -> str:
        """A download URL valid for ``expires_seconds``."""
        return await anyio.to_thread.run_sync(
            partial(s3ops.presigned_get, self._s3, bucket, key, expires_seconds)
        )

    @staticmethod
    async def _record_pending(bucket: str, key: str, fields: dict[str, Any]) -> Blob:
        """One atomic upsert (one round trip): the record, created or reset to ``pending``
        with ``fields`` (content type, owner, kind, size, SHA-256)."""
        from shared.db import upsert_document
        from shared.models import Blob, utcnow

        now = utcnow()
        update = {
            "$set": {**fields, "status": "pending", "error": None, "updated_at": now},
            "$setOnInsert": {"bucket": bucket, "key": key, "created_at": now},
        }

        return await upsert_document(
            Blob, lambda: Blob.find_one(Blob.bucket == bucket, Blob.key == key), update
        )

    @staticmethod
    async def _transition(blob: Blob, status: BlobStatus, error: str | None = None) -> None:
        from shared.models import utcnow

        blob.status = status
        blob.error = error
        blob.updated_at = utcnow()
        await blob.save()
