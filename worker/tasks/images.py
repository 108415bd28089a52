"""``process_uploaded_image``: an upload in S3 becomes a thumbnail and a large WebP.

The ``Image`` document (one per upload key) tells the owner where it stands:
``processing`` -> ``done`` with the variants' keys, or ``failed`` with a readable reason.
The thumbnail (what a listing shows first) is encoded before the large variant and
stored while the large one is still encoding; the Image is ``done`` only once both are.
Running the job twice leaves the same document and overwrites the same two objects, so
Streaq's at-least-once delivery is harmless. Refusals (not an image, too many pixels,
rejected by the upload handler) fail at once; S3 faults propagate for the retry policy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.lowlevel import RunVar

from shared.api_models import UploadKey
from shared.blob_ref import BlobRef
from shared.errors import PermanentJobError
from shared.jobs import ProcessImageInput
from worker.context import WorkerContext
from worker.imaging import EncodedImage, PreparedImage, prepare_image
from worker.progress import progress
from worker.retry_policy import current_attempt
from worker.tasks.base import job

if TYPE_CHECKING:
    from shared.models import Image, ImageStatus

# Longest reason stored on a failed Image (the API shows it to the owner).
MAX_REASON_CHARS = 500
_CPU_LIMIT: RunVar[anyio.CapacityLimiter] = RunVar("image_cpu_limit")
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a Fargate
    task's vCPUs; the host's CPUs may all be in the affinity mask)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def cpu_limiter() -> anyio.CapacityLimiter:
    """The worker's image slots, one per CPU (see :class:`ImageSlot`). One limiter per
    event loop, as anyio keeps its default thread limiter."""
    try:
        return _CPU_LIMIT.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(available_cpus())
        _CPU_LIMIT.set(limiter)
        return limiter


class ImageSlot:
    """One of the worker's image slots, held from the decode until the large variant is
    encoded. Image work is CPU-bound and each image uses one thread (worker/imaging_vips.py),
    so a worker running many image jobs at once works on at most one image per CPU, and
    holds at most that many decoded images in memory, instead of oversubscribing its CPUs.
    :meth:`release` lets the slot go early (before the large variant's upload)."""

    def __init__(self) -> None:
        self._limiter = cpu_limiter()
        self._held = False

    async def __aenter__(self) -> ImageSlot:
        await self._limiter.acquire_on_behalf_of(self)
        self._held = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limiter.release_on_behalf_of(self)


def _upload_key(key: str) -> UploadKey:
    """The upload's parts: only keys ``POST /uploads`` makes are processed."""
    upload = UploadKey.parse(key)
    if upload is None:
        raise PermanentJobError(
            f"key {key!r:.200} is not uploads/{{owner}}/{{upload_id}}/{{filename}}"
        )
    return upload


def _variant_key(upload: UploadKey, name: str) -> str:
    """Where a variant goes in the results bucket (which does not trigger the handler)."""
    return f"images/{upload.owner}/{upload.upload_id}/{name}.webp"


@job("process_uploaded_image")
async def process_uploaded_image(ctx: WorkerContext, inp: ProcessImageInput) -> dict[str, Any]:
    """Derive the WebP variants of one upload and record them on its ``Image``."""
    upload = _upload_key(inp.key)
    if inp.bucket != ctx.settings.uploads_bucket:
        # Not an upload: no Image to record, and no other bucket's objects to publish.
        raise PermanentJobError(f"bucket {inp.bucket!r} is not the uploads bucket")
    await progress(0.05, "reading the upload")
    source = _Download()
    async with anyio.create_task_group() as tg:
        # The upload's GET overlaps the Image's upsert: they do not depend on each other.
        if not inp.reject_reason:
            tg.start_soon(source.run, ctx, inp)
        image = await _upsert_image(inp.bucket, inp.key, upload.owner)
    written: list[str] = []  # variant keys this run has put, for a permanent failure to drop
    try:
        if inp.reject_reason:
            raise PermanentJobError(inp.reject_reason)
        async with ImageSlot() as slot:
            data = source.result()
            await progress(0.3, "decoding and resizing")
            prepared = await _prepare(ctx, data)
            await progress(0.6, "encoding and storing the variants")
            variants, sizes = await _encode_and_put(ctx, upload, prepared, written,
                                                    slot.release)
    except PermanentJobError as exc:
        await _drop_variants(ctx, image, written)
        await _set_status(image, "failed", error=str(exc)[:MAX_REASON_CHARS])
        raise
    except Exception as exc:
        # A transient fault is retried; on the last try it is final, so say so on the Image
        # instead of leaving it "processing" forever.
        if current_attempt().last:
            reason = f"gave up after {current_attempt().tries} tries: {type(exc).__name__}: {exc}"
            await _set_status(image, "failed", error=reason[:MAX_REASON_CHARS])
        raise
    image.variants, image.width, image.height = variants, prepared.width, prepared.height
    await _set_status(image, "done")
    await progress(1.0, "done")
    results = ctx.settings.results_bucket
    return {
        "image_id": str(image.id),
        "variants": variants,
        "width": prepared.width,
        "height": prepared.height,
        "bytes": sizes,
        "files": [BlobRef(f"{name}.webp", results, key, "image/webp", sizes[name]).to_json()
                  for name, key in variants.items()],
    }


class _Download:
    """The upload's bytes, fetched in the background: its outcome is kept, not raised,
    so that a refusal is reported after the Image exists (to be marked failed)."""

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._error: Exception | None = None

    async def run(self, ctx: WorkerContext, inp: ProcessImageInput) -> None:
        try:
            self._data = await _fetch(ctx, inp)
        except Exception as exc:
            self._error = exc

    def result(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._data is None:
            raise RuntimeError("the upload was never fetched")
        return self._data


async def _fetch(ctx: WorkerContext, inp: ProcessImageInput) -> bytes:
    from shared.s3 import ObjectMissing, ObjectTooLarge

    settings = ctx.settings
    try:
        data, _ = await ctx.blobs.get_bytes(
            inp.bucket, inp.key, max_bytes=settings.upload_max_bytes
        )
    except ObjectTooLarge as exc:
        limit_mib = settings.upload_max_bytes / 2**20
        raise PermanentJobError(f"file is larger than the {limit_mib:.1f} MiB limit") from exc
    except ObjectMissing as exc:
        raise PermanentJobError("the uploaded file no longer exists") from exc
    return data


async def _prepare(ctx: WorkerContext, data: bytes) -> PreparedImage:
    settings = ctx.settings
    # Decoding and encoding take 0.1-1 s of CPU: in threads, so that the worker's
    # heartbeat and its other jobs keep running meanwhile (the caller holds an ImageSlot).
    return await anyio.to_thread.run_sync(
        partial(
            prepare_image,
            data,
            max_pixels=settings.image_max_pixels,
            large_side=settings.image_max_side,
            thumb_side=settings.image_thumbnail_side,
        )
    )


async def _encode_and_put(ctx: WorkerContext, upload: UploadKey, prepared: PreparedImage,
                          written: list[str], encoded: Callable[[], None]
                          ) -> tuple[dict[str, str], dict[str, int]]:
    """Store the thumbnail (its Blob record, then its PUT) while the large variant is
    encoded in a thread, then store the large one; their keys and sizes. Each key is
    appended to ``written`` once its object is in S3; ``encoded`` is called once the
    encoding is over (the image's CPU work is done).

    Every upload runs to its end even when something else fails, so each Blob records its
    own outcome (``uploaded`` or ``error``, never a cancelled ``pending``); then an encoding
    error is raised, or else the first failed upload's, for the job's failure handling and
    retry policy.
    """
    variants = {name: _variant_key(upload, name) for name in ("large", "thumbnail")}
    sizes: dict[str, int] = {}
    put_errors: list[Exception] = []

    async def put(name: str, output: EncodedImage) -> None:
        try:
            await ctx.blobs.put_bytes(variants[name], output.data, output.content_type,
                                      owner=upload.owner, kind=f"image-{name}")
        except Exception as exc:
            put_errors.append(exc)
        else:
            written.append(variants[name])

    encode_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        sizes["thumbnail"] = len(prepared.thumbnail.data)
        tg.start_soon(put, "thumbnail", prepared.thumbnail)
        try:
            large = await anyio.to_thread.run_sync(prepared.encode_large)
        except Exception as exc:  # kept until the thumbnail's upload has run its course
            encode_error = exc
        else:
            sizes["large"] = len(large.data)
            tg.start_soon(put, "large", large)
        finally:
            encoded()
    if encode_error is not None:
        raise encode_error
    if put_errors:
        raise put_errors[0]
    return variants, {name: sizes[name] for name in variants}


async def _upsert_image(bucket: str, source_key: str, owner: str) -> Image:
    """The upload's one ``Image``, created on first sight and marked ``processing``, in one
    atomic upsert (one round trip)."""
    from shared.db import upsert_document
    from shared.models import Image, utcnow

    now = utcnow()
    update = {
        "$set": {"status": "processing", "error": None, "updated_at": now},
        "$setOnInsert": {"owner": owner, "bucket": bucket, "source_key": source_key,
                         "variants": {}, "width": None, "height": None, "created_at": now},
    }

    return await upsert_document(
        Image, lambda: Image.find_one(Image.source_key == source_key), update
    )


async def _drop_variants(ctx: WorkerContext, image: Image, written: list[str]) -> None:
    """Forget (and delete) variants of an earlier version of the upload, and any this run
    wrote before it failed: they do not show what the owner uploaded under this key."""
    for key in dict.fromkeys([*image.variants.values(), *written]):
        await ctx.blobs.delete(ctx.settings.results_bucket, key)
    image.variants, image.width, image.height = {}, None, None


async def _set_status(image: Image, status: ImageStatus, error: str | None = None) -> None:
    from shared.models import utcnow

    image.status = status
    image.error = error
    image.updated_at = utcnow()
    await image.save()
