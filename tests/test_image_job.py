"""process_uploaded_image through the queue: uploads in moto's S3, WebPs out, Image in Mongo."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image as PILImage

from infra.local.private_redis import free_port
from shared.aws import s3_client
from shared.config import Settings
from shared.jobs import ProcessImageInput
from shared.models import Blob, Image
from shared.s3 import S3Unavailable
from tests.support import on_try
from tests.test_imaging import (
    QUADRANTS,
    close,
    colour_at,
    encode,
    jpeg,
    one_bit_png,
    photo_like,
    riff_chunks,
)
from worker.context import open_context
from worker.tasks.images import process_uploaded_image

pytestmark = pytest.mark.anyio

OWNER = "alice"
UPLOAD_ID = "0f3c9d2a"
KEY = f"uploads/{OWNER}/{UPLOAD_ID}/holiday photo.jpg"


def put_upload(settings: Settings, data: bytes, key: str = KEY,
               content_type: str = "image/jpeg") -> None:
    s3_client(settings).put_object(
        Bucket=settings.uploads_bucket, Key=key, Body=data, ContentType=content_type
    )


def read_result(settings: Settings, key: str) -> tuple[bytes, str]:
    response = s3_client(settings).get_object(Bucket=settings.results_bucket, Key=key)
    return response["Body"].read(), response["ContentType"]


def result_keys(settings: Settings) -> list[str]:
    listing = s3_client(settings).list_objects_v2(Bucket=settings.results_bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def assert_image_done(settings: Settings, result: dict[str, Any]) -> None:
    """The upload's one Image is done, with no error, listing exactly the variants the job
    returned, and those are the only objects in the results bucket."""
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert (image_doc.status, image_doc.error) == ("done", None)
    assert image_doc.variants == result["variants"]
    assert result_keys(settings) == sorted(result["variants"].values())

def payload(settings: Settings, key: str = KEY, **extra: Any) -> dict[str, Any]:
    return {"bucket": settings.uploads_bucket, "key": key, **extra}


async def run(queue: Any, body: dict[str, Any]) -> Any:
    job = await queue.enqueue("process_uploaded_image", body, owner=OWNER)
    return await queue.wait(job.id, OWNER, timeout=30)


async def test_upload_becomes_upright_webps_and_a_done_image(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN a 400x200 JPEG whose EXIF says "rotate 90 degrees clockwise to display"
    put_upload(settings, jpeg((400, 200), orientation=6))
    # WHEN the job runs
    view = await run(queue, payload(settings))
    # THEN it reports the upright size and two variants in the results bucket
    assert view.status == "done", view.error
    result = view.result
    prefix = f"images/{OWNER}/{UPLOAD_ID}"
    assert result["variants"] == {"large": f"{prefix}/large.webp",
                                  "thumbnail": f"{prefix}/thumbnail.webp"}
    assert (result["width"], result["height"]) == (200, 400)
    assert result_keys(settings) == [f"{prefix}/large.webp", f"{prefix}/thumbnail.webp"]
    # AND each variant is an upright WebP of the reported size, without metadata
    for name, size in (("large", (200, 400)), ("thumbnail", (128, 256))):
        data, content_type = read_result(settings, result["variants"][name])
        assert content_type == "image/webp"
        assert result["bytes"][name] == len(data)
        image = PILImage.open(io.BytesIO(data))
        assert (image.format, image.size) == ("WEBP", size)
        assert set(riff_chunks(data)) <= {b"VP8 ", b"VP8L", b"VP8X", b"ALPH"}
        # The source's top-left (red) quadrant is now top-right.
        assert close(colour_at(image, 0.75, 0.25), QUADRANTS[0])
    # AND the Image document is done, with the variants and the upright size
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert str(image_doc.id) == result["image_id"]
    assert (image_doc.status, image_doc.error) == ("done", None)
    assert (image_doc.owner, image_doc.bucket) == (OWNER, settings.uploads_bucket)
    assert image_doc.variants == result["variants"]
    assert (image_doc.width, image_doc.height) == (200, 400)
    # AND both objects are tracked as the owner's uploaded blobs
    blobs = await Blob.find(Blob.owner == OWNER).to_list()
    assert sorted((b.kind, b.status) for b in blobs) == [
        ("image-large", "uploaded"), ("image-thumbnail", "uploaded")
    ]


async def test_rerun_is_idempotent(worker: Any, queue: Any, settings: Settings) -> None:
    # GIVEN an upload processed once
    put_upload(settings, encode(photo_like((900, 600)), "PNG"), content_type="image/png")
    first = await run(queue, payload(settings))
    assert first.status == "done", first.error
    # WHEN the same event is delivered again
    second = await run(queue, payload(settings))
    # THEN the same Image and the same two objects result
    assert second.status == "done", second.error
    assert second.result == first.result
    assert len(await Image.find(Image.source_key == KEY).to_list()) == 1
    assert result_keys(settings) == sorted(first.result["variants"].values())
    assert len(await Blob.find(Blob.owner == OWNER).to_list()) == 2


async def assert_failed_for_good(queue: Any, view: Any, reason: str) -> None:
    """The job failed on its first try, left a dead letter, and its Image says why."""
    assert view.status == "failed"
    assert view.tries == 1
    assert reason in view.error["message"]
    letters = await queue.dead_letters(OWNER)
    assert [(d.id, d.name) for d in letters] == [(view.id, "process_uploaded_image")]
    assert reason in letters[0].error
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert image_doc.status == "failed"
    assert image_doc.error is not None
    assert reason in image_doc.error
    assert image_doc.variants == {}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"dear diary, this is not a photo\n" * 30, "not an image (cannot identify format)"),
        (encode(photo_like((800, 600)), "JPEG")[:20_000], "image is truncated or corrupt"),
        (one_bit_png(12000, 10000), "image is 12000x10000 = 120.0 MP, over the 50.0 MP limit"),
        (one_bit_png(100_000, 100_000, with_pixels=False), "MP, over the 50.0 MP limit"),
    ],
    ids=["text-named-jpg", "truncated-jpeg", "120-megapixels", "header-only-bomb"],
)
async def test_refused_upload_fails_for_good(
    worker: Any, queue: Any, settings: Settings, data: bytes, reason: str
) -> None:
    # GIVEN an upload that is not a processable image
    put_upload(settings, data)
    # WHEN the job runs
    view = await run(queue, payload(settings))
    # THEN it fails at once with the reason, everywhere the owner can look
    await assert_failed_for_good(queue, view, reason)
    assert result_keys(settings) == []


async def test_upload_handler_rejection_is_recorded(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN the S3 handler refused the object (the Lambda cannot write to MongoDB)
    reason = "file is 31457280 bytes; uploads are limited to 26214400"
    # WHEN the job runs with that reason (the object itself is never read)
    view = await run(queue, payload(settings, reject_reason=reason, size=31457280))
    # THEN the Image is failed with it, and the job is dead-lettered
    await assert_failed_for_good(queue, view, reason)


async def test_missing_upload_fails_for_good(
    worker: Any, queue: Any, settings: Settings
) -> None:
    view = await run(queue, payload(settings))  # nothing was uploaded under KEY
    await assert_failed_for_good(queue, view, "the uploaded file no longer exists")


async def test_oversized_upload_fails_for_good(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN an upload one byte over the limit (the handler's check was bypassed)
    put_upload(settings, b"\xff\xd8" + b"\x00" * (settings.upload_max_bytes - 1))
    view = await run(queue, payload(settings))
    await assert_failed_for_good(queue, view, "file is larger than the 25.0 MiB limit")


async def test_key_outside_an_owner_folder_is_refused(
    worker: Any, queue: Any, settings: Settings
) -> None:
    job = await queue.enqueue(
        "process_uploaded_image", payload(settings, key="uploads/loose.jpg"), owner=OWNER
    )
    view = await queue.wait(job.id, OWNER, timeout=30)
    assert view.status == "failed"
    assert "uploads/{owner}/{upload_id}/{filename}" in view.error["message"]
    assert await Image.find_all().to_list() == []


async def test_object_outside_the_uploads_bucket_is_refused(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # The job must not become a way to read (and publish) other buckets' objects.
    body = payload(settings) | {"bucket": settings.results_bucket}
    view = await run(queue, body)
    assert view.status == "failed"
    assert "is not the uploads bucket" in view.error["message"]
    assert await Image.find_all().to_list() == []


async def test_s3_outage_is_transient_until_the_last_try(
    mongo: Any, settings: Settings
) -> None:
    # GIVEN a worker context whose S3 endpoint refuses connections
    down = settings.model_copy(update={"aws_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    async with open_context(down, redis=None) as ctx:
        # WHEN the job runs on its first of four tries
        with on_try(1, 4), pytest.raises(S3Unavailable):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
        # THEN the error is one the retry policy retries, and the Image is not failed
        image_doc = await Image.find_one(Image.source_key == KEY)
        assert image_doc is not None
        assert (image_doc.status, image_doc.error) == ("processing", None)
        # WHEN the last try fails the same way
        with on_try(4, 4), pytest.raises(S3Unavailable):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the Image says it gave up, instead of staying "processing" forever
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert image_doc.status == "failed"
    assert image_doc.error is not None
    assert image_doc.error.startswith("gave up after 4 tries: S3Unavailable")


async def test_replacing_an_upload_with_a_non_image_drops_the_old_variants(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN an upload processed into variants
    put_upload(settings, jpeg((300, 200)))
    first = await run(queue, payload(settings))
    assert first.status == "done", first.error
    # WHEN the same key is overwritten with something that is not an image
    put_upload(settings, b"not a picture any more")
    second = await run(queue, payload(settings))
    # THEN the Image is failed and the old variants are gone from the results bucket
    assert second.status == "failed"
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert (image_doc.status, image_doc.variants, image_doc.width) == ("failed", {}, None)
    assert result_keys(settings) == []


def fail_puts_of(monkeypatch: pytest.MonkeyPatch, name: str, error: Exception) -> None:
    """Make S3 refuse the PUT of one variant (``name``); every other call goes through."""
    from shared import s3

    real_put = s3.put_object

    def put_object(s3: Any, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith(f"/{name}.webp"):
            raise error
        return real_put(s3, bucket, key, *args, **kwargs)

    monkeypatch.setattr(s3, "put_object", put_object)


async def test_variants_are_written_at_the_same_time(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from shared import s3

    # GIVEN an S3 whose PUTs each wait until the other variant's PUT has started too (the
    # large one's does not wait for the thumbnail's to end)
    put_upload(settings, jpeg((400, 300)))
    both_started = threading.Barrier(2, timeout=10)
    real_put = s3.put_object

    def put_object(*args: Any, **kwargs: Any) -> Any:
        both_started.wait()  # BrokenBarrierError if the PUTs ran one after the other
        return real_put(*args, **kwargs)

    monkeypatch.setattr(s3, "put_object", put_object)
    # WHEN the job runs
    async with open_context(settings, redis=None) as ctx:
        result = await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN both variants were written, and recorded as uploaded blobs
    assert result_keys(settings) == sorted(result["variants"].values())
    blobs_ = await Blob.find(Blob.owner == OWNER).to_list()
    assert sorted((b.kind, b.status) for b in blobs_) == [
        ("image-large", "uploaded"), ("image-thumbnail", "uploaded")
    ]


async def test_a_failed_variant_put_is_retried_and_the_other_is_recorded(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN S3 fails the thumbnail's PUT as if throttling, but not the large variant's
    put_upload(settings, jpeg((400, 300)))
    fail_puts_of(monkeypatch, "thumbnail", S3Unavailable("s3://results/...: SlowDown"))
    async with open_context(settings, redis=None) as ctx:
        # WHEN the job runs on its first of four tries
        with on_try(1, 4), pytest.raises(S3Unavailable):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
        # THEN the error reaches the retry policy, the Image is still processing, and
        # each variant's Blob says what happened to it (none is left pending)
        image_doc = await Image.find_one(Image.source_key == KEY)
        assert image_doc is not None
        assert (image_doc.status, image_doc.variants) == ("processing", {})
        blobs_ = {b.kind: b for b in await Blob.find(Blob.owner == OWNER).to_list()}
        assert blobs_["image-large"].status == "uploaded"
        assert blobs_["image-thumbnail"].status == "error"
        assert "SlowDown" in (blobs_["image-thumbnail"].error or "")
        # WHEN the last try fails the same way
        with on_try(4, 4), pytest.raises(S3Unavailable):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
        image_doc = await Image.find_one(Image.source_key == KEY)
        assert image_doc is not None
        assert image_doc.status == "failed"
        assert (image_doc.error or "").startswith("gave up after 4 tries: S3Unavailable")
        # WHEN S3 recovers and the upload is delivered again
        monkeypatch.undo()
        result = await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the same Image is done, with both variants
    await assert_image_done(settings, result)


async def test_a_refused_variant_put_fails_the_image(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.s3 import S3Refused

    # GIVEN S3 refuses the large variant's PUT for good
    put_upload(settings, jpeg((400, 300)))
    fail_puts_of(monkeypatch, "large", S3Refused("S3 refused s3://results/...: AccessDenied"))
    # WHEN the job runs
    async with open_context(settings, redis=None) as ctx:
        with on_try(1, 4), pytest.raises(S3Refused):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the Image is failed with the reason at once, and lists no variants
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert image_doc.status == "failed"
    assert "AccessDenied" in (image_doc.error or "")
    assert image_doc.variants == {}
    assert result_keys(settings) == []


class LargeEncodeHeld:
    """``PreparedImage.encode_large`` made to wait, in its thread, until the thumbnail is
    stored (its ``put_bytes`` returned), to note what the owner could see at that moment,
    and then to encode, or to fail with ``error``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, settings: Settings,
                 error: Exception | None = None) -> None:
        import threading

        from shared.blobs import BlobService
        from worker.imaging import PreparedImage

        self.thumbnail_stored = threading.Event()
        self.seen: dict[str, Any] = {}
        real_put, real_encode = BlobService.put_bytes, PreparedImage.encode_large

        async def put_bytes(blobs: BlobService, key: str, *args: Any, **kwargs: Any) -> Any:
            blob = await real_put(blobs, key, *args, **kwargs)
            if key.endswith("/thumbnail.webp"):
                self.thumbnail_stored.set()
            return blob

        def encode_large(prepared: PreparedImage) -> Any:
            import anyio.from_thread

            # Never set if the job stored nothing before the large variant was encoded.
            self.seen["thumbnail stored first"] = self.thumbnail_stored.wait(timeout=10)
            self.seen["results"] = result_keys(settings)
            async def image_now() -> Image | None:
                return await Image.find_one(Image.source_key == KEY)

            doc = anyio.from_thread.run(image_now)
            self.seen["image"] = (doc.status, doc.variants) if doc else None
            if error is not None:
                raise error
            return real_encode(prepared)

        monkeypatch.setattr(BlobService, "put_bytes", put_bytes)
        monkeypatch.setattr(PreparedImage, "encode_large", encode_large)


async def test_thumbnail_is_stored_while_the_large_variant_is_encoded(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an upload, and a large-variant encoder that waits until the thumbnail is stored
    put_upload(settings, jpeg((1200, 800)))
    held = LargeEncodeHeld(monkeypatch, settings)
    # WHEN the job runs
    async with open_context(settings, redis=None) as ctx:
        result = await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the thumbnail was in S3 before the large variant was encoded, while the Image
    # still said "processing" without variants
    thumb_key = result["variants"]["thumbnail"]
    assert held.seen == {"thumbnail stored first": True, "results": [thumb_key],
                         "image": ("processing", {})}
    # AND the job ended as before: both variants stored and recorded, the Image done
    assert result_keys(settings) == sorted(result["variants"].values())
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert (image_doc.status, image_doc.variants) == ("done", result["variants"])
    blobs_ = await Blob.find(Blob.owner == OWNER).to_list()
    assert sorted((b.kind, b.status) for b in blobs_) == [
        ("image-large", "uploaded"), ("image-thumbnail", "uploaded")
    ]


async def test_a_large_encode_failure_after_the_thumbnail_is_retried(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the large variant's encoder fails (as if out of memory) once the thumbnail is
    # stored
    put_upload(settings, jpeg((1200, 800)))
    held = LargeEncodeHeld(monkeypatch, settings, error=OSError("encoding error 1"))
    async with open_context(settings, redis=None) as ctx:
        # WHEN the job runs on its first of four tries
        with on_try(1, 4), pytest.raises(OSError, match="encoding error 1"):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
        # THEN the error reaches the retry policy, and the Image is still processing
        # without variants: the thumbnail alone is never shown as the result
        assert held.seen["thumbnail stored first"]
        image_doc = await Image.find_one(Image.source_key == KEY)
        assert image_doc is not None
        assert (image_doc.status, image_doc.variants) == ("processing", {})
        blobs_ = await Blob.find(Blob.owner == OWNER).to_list()
        assert [(b.kind, b.status) for b in blobs_] == [("image-thumbnail", "uploaded")]
        # WHEN the last try fails the same way
        with on_try(4, 4), pytest.raises(OSError):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
        image_doc = await Image.find_one(Image.source_key == KEY)
        assert image_doc is not None
        assert (image_doc.status, image_doc.variants) == ("failed", {})
        assert (image_doc.error or "").startswith("gave up after 4 tries: OSError")
        # WHEN the encoder recovers and the upload is delivered again
        monkeypatch.undo()
        result = await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the same Image is done, with both variants
    await assert_image_done(settings, result)


async def test_a_permanent_large_encode_failure_drops_the_stored_thumbnail(
    mongo: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.imaging import ImageRejected

    # GIVEN the large variant is refused for good once the thumbnail is stored
    put_upload(settings, jpeg((1200, 800)))
    LargeEncodeHeld(monkeypatch, settings, error=ImageRejected("cannot encode this image"))
    # WHEN the job runs
    async with open_context(settings, redis=None) as ctx:
        with on_try(1, 4), pytest.raises(ImageRejected):
            await process_uploaded_image(ctx, ProcessImageInput(**payload(settings)))
    # THEN the Image is failed at once with the reason, the thumbnail is deleted again, and
    # its Blob says so
    image_doc = await Image.find_one(Image.source_key == KEY)
    assert image_doc is not None
    assert (image_doc.status, image_doc.variants) == ("failed", {})
    assert "cannot encode this image" in (image_doc.error or "")
    assert result_keys(settings) == []
    blobs_ = await Blob.find(Blob.owner == OWNER).to_list()
    assert [(b.kind, b.status) for b in blobs_] == [("image-thumbnail", "deleted")]


async def test_images_are_worked_on_at_most_one_per_cpu_at_a_time() -> None:
    import threading

    import anyio

    from worker.tasks.images import ImageSlot, available_cpus, cpu_limiter

    # GIVEN the job's image slots (one limiter per event loop, one slot per CPU), and 3
    # image jobs more than there are CPUs
    assert cpu_limiter() is cpu_limiter()
    assert cpu_limiter().total_tokens == available_cpus() >= 1
    running, most = 0, 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.1)
        with lock:
            running -= 1

    async def image_job() -> None:
        async with ImageSlot() as slot:  # decode, then encode, as the job does
            await anyio.to_thread.run_sync(step)
            await anyio.to_thread.run_sync(step)
            slot.release()
            slot.release()  # releasing twice is harmless (the job may release early)

    # WHEN they all start at once
    async with anyio.create_task_group() as tg:
        for _ in range(available_cpus() + 3):
            tg.start_soon(image_job)
    # THEN no more than one image per CPU was ever being worked on, and every slot is free
    assert most == available_cpus()
    assert cpu_limiter().borrowed_tokens == 0
