"""BlobService: S3 on moto's server, Blob records on the MongoDB stand-in (or MONGODB_URI)."""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

from shared import s3 as s3ops
from shared.aws import s3_client
from shared.blobs import BlobService, InvalidBlobKey
from shared.config import Settings
from shared.models import Blob

pytestmark = pytest.mark.anyio


@pytest.fixture
def s3(settings: Settings) -> Any:
    return s3_client(settings)


@pytest.fixture
def blobs(s3: Any, settings: Settings, mongo: Any) -> BlobService:
    return BlobService(s3, settings)


async def test_put_bytes_records_uploaded_blob(blobs: BlobService, settings: Settings,
                                              s3: Any) -> None:
    # GIVEN report bytes
    data = b"day,total\n2026-01-01,100\n"
    # WHEN they are put without a bucket
    blob = await blobs.put_bytes("reports/r1.csv", data, "text/csv", owner="u1",
                                 kind="report-csv")
    # THEN they land in the results bucket and the record says so
    stored = await Blob.get(blob.id)
    assert stored is not None
    assert (stored.bucket, stored.key, stored.status) == (settings.results_bucket,
                                                          "reports/r1.csv", "uploaded")
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (stored.owner, stored.kind, stored.error) == ("u1", "report-csv", None)
    assert stored.updated_at >= stored.created_at
    assert await blobs.get_bytes(settings.results_bucket, "reports/r1.csv") == (data, "text/csv")
    head = s3ops.head_object(s3, settings.results_bucket, "reports/r1.csv")
    assert head is not None
    assert head.sha256 == stored.sha256


async def test_pending_is_recorded_before_the_upload(blobs: BlobService, s3: Any,
                                                     settings: Settings) -> None:
    seen: list[str] = []

    async def status() -> str:
        blob = await Blob.find_one(Blob.bucket == settings.results_bucket, Blob.key == "p.bin")
        return blob.status if blob else "absent"

    def look_at_record(**_: Any) -> None:
        # Runs in the upload's thread, just before the PUT goes out.
        seen.append(anyio.from_thread.run(status))

    s3.meta.events.register("before-send.s3.PutObject", look_at_record)
    await blobs.put_bytes("p.bin", b"123", "application/octet-stream")
    assert seen == ["pending"]


async def test_re_put_updates_the_same_record(blobs: BlobService, settings: Settings) -> None:
    first = await blobs.put_bytes("same.txt", b"one", "text/plain")
    second = await blobs.put_bytes("same.txt", b"two!", "text/plain", kind="note")
    records = await Blob.find(Blob.bucket == settings.results_bucket,
                              Blob.key == "same.txt").to_list()
    assert len(records) == 1
    assert first.id == second.id == records[0].id
    assert (records[0].size, records[0].kind, records[0].status) == (4, "note", "uploaded")
    assert records[0].created_at == first.created_at


async def test_concurrent_puts_of_one_key_leave_one_record(blobs: BlobService,
                                                           settings: Settings) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(blobs.put_bytes, "race.txt", f"v{i}".encode(), "text/plain")
    assert await Blob.find(Blob.key == "race.txt").count() == 1


async def test_failed_upload_records_error_and_reraises(blobs: BlobService) -> None:
    bucket = "no-such-bucket-" + uuid.uuid4().hex[:8]
    with pytest.raises(s3ops.BucketMissing):
        await blobs.put_bytes("x.txt", b"x", "text/plain", bucket=bucket)
    blob = await Blob.find_one(Blob.bucket == bucket, Blob.key == "x.txt")
    assert blob is not None
    assert blob.status == "error"
    assert blob.error is not None
    assert "NoSuchBucket" in blob.error


async def test_delete_marks_deleted_and_is_idempotent(blobs: BlobService,
                                                      settings: Settings) -> None:
    await blobs.put_bytes("gone.txt", b"bye", "text/plain")
    assert await blobs.exists(settings.results_bucket, "gone.txt")
    await blobs.delete(settings.results_bucket, "gone.txt")
    await blobs.delete(settings.results_bucket, "gone.txt")
    blob = await Blob.find_one(Blob.key == "gone.txt")
    assert blob is not None
    assert blob.status == "deleted"
    assert not await blobs.exists(settings.results_bucket, "gone.txt")
    with pytest.raises(s3ops.ObjectMissing):
        await blobs.get_bytes(settings.results_bucket, "gone.txt")


async def test_put_file_and_presigned_get(blobs: BlobService, settings: Settings,
                                          tmp_path: Path) -> None:
    path = tmp_path / "thumb.webp"
    path.write_bytes(b"RIFF" + bytes(range(200)))
    blob = await blobs.put_file("thumbs/t.webp", path, "image/webp",
                                bucket=settings.uploads_bucket, kind="thumbnail")
    assert (blob.bucket, blob.status, blob.size) == (settings.uploads_bucket, "uploaded", 204)
    url = await blobs.presigned_get(settings.uploads_bucket, "thumbs/t.webp", expires_seconds=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == path.read_bytes()


async def test_get_bytes_respects_limit(blobs: BlobService, settings: Settings) -> None:
    await blobs.put_bytes("big.bin", b"0" * 2048, "application/octet-stream")
    with pytest.raises(s3ops.ObjectTooLarge):
        await blobs.get_bytes(settings.results_bucket, "big.bin", max_bytes=1024)


@pytest.mark.parametrize("key", ["", "/abs", "a\nb", "k" * 1025])
async def test_bad_keys_are_refused_without_a_record(blobs: BlobService, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await blobs.put_bytes(key, b"x", "text/plain")
    assert await Blob.find(Blob.key == key).count() == 0
