"""functions/s3_events through ``lambda_handler`` with S3 ObjectCreated events built from the
shared sample, against moto's S3 and the private Redis: URL-encoded keys, at-least-once
delivery, keys that are not ours, refused objects, batches, Redis down, and the whole path
from ``POST /uploads`` to the uploader reading the image job."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from functions import s3_events
from infra.local.private_redis import free_port
from shared.api_models import UploadKey
from shared.aws import s3_client
from shared.config import Settings
from shared.errors import QueueUnavailable
from tests.conftest import load_event
from tests.test_api import SUB, Api, LambdaContainer, LambdaContext

OTHER = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 512


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"upload_max_bytes": 4096})


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


def put(settings: Settings, key: str, body: bytes = JPEG,
        content_type: str = "image/jpeg") -> dict[str, Any]:
    """Store an object in moto's uploads bucket; its ETag and size, as S3 reports them."""
    response = s3_client(settings).put_object(
        Bucket=settings.uploads_bucket, Key=key, Body=body, ContentType=content_type)
    return {"eTag": response["ETag"].strip('"'), "size": len(body)}


def record(settings: Settings, key: str, *, size: int, etag: str,
           version_id: str | None = None) -> dict[str, Any]:
    """One ObjectCreated record shaped like the sample, for ``key`` (URL-encoded as S3 does)."""
    sample: dict[str, Any] = load_event("s3-object-created.json")["Records"][0]
    sample["s3"]["bucket"]["name"] = settings.uploads_bucket
    sample["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{settings.uploads_bucket}"
    obj = sample["s3"]["object"]
    obj.update(key=urllib.parse.quote_plus(key, safe="/"), size=size, eTag=etag)
    if version_id is None:
        obj.pop("versionId")
    else:
        obj["versionId"] = version_id
    sample["responseElements"]["x-amz-request-id"] = uuid.uuid4().hex[:16].upper()
    return sample


def invoke(box: LambdaContainer, *records: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = box.invoke(s3_events.lambda_handler, {"Records": list(records)},
                                        LambdaContext())
    return result


def upload_key(filename: str = "photo.jpg", owner: str = SUB) -> str:
    return f"uploads/{owner}/{uuid.uuid4().hex}/{filename}"


def job_for(box: LambdaContainer, settings: Settings, key: str) -> dict[str, Any]:
    upload = UploadKey.parse(key)
    assert upload is not None
    meta: dict[str, Any] = box.queue(
        lambda q: q.owned_meta(upload.job_id(settings.uploads_bucket), upload.owner))
    return {**meta, "payload": json.loads(meta["payload"])}


def emf(out: str, name: str) -> list[dict[str, Any]]:
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    return [b for b in blobs if name in b]


def test_sample_record_with_an_encoded_key_enqueues_one_image_job(
    container: LambdaContainer, settings: Settings
) -> None:
    # GIVEN the sample notification, whose key is URL-encoded ("+" and "%28")
    event = load_event("s3-object-created.json")
    event["Records"][0]["s3"]["bucket"]["name"] = settings.uploads_bucket
    raw_key = event["Records"][0]["s3"]["object"]["key"]
    key = urllib.parse.unquote_plus(raw_key)
    assert key.endswith("/holiday photo (1).jpg")
    stored = put(settings, key)
    event["Records"][0]["s3"]["object"]["size"] = stored["size"]
    # WHEN the handler gets it
    summary = container.invoke(s3_events.lambda_handler, event, LambdaContext())
    # THEN one job for the decoded key, owned by the key's owner segment
    assert summary == {"records": 1, "jobs": 1, "new_jobs": 1}
    job = job_for(container, settings, key)
    assert job["name"] == "process_uploaded_image"
    assert job["owner"] == SUB
    assert job["payload"]["key"] == key
    assert job["payload"]["version_id"] == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert job["payload"]["reject_reason"] is None
    assert job["correlation_id"] == "C3D13FE58DE4C810"  # the upload's S3 request id


def test_the_same_record_delivered_three_times_is_one_job(
    container: LambdaContainer, settings: Settings
) -> None:
    key = upload_key("a (copy).png")
    stored = put(settings, key, content_type="image/png")
    rec = record(settings, key, size=stored["size"], etag=stored["eTag"])
    assert invoke(container, rec, rec) == {"records": 2, "jobs": 2, "new_jobs": 1}
    assert invoke(container, rec) == {"records": 1, "jobs": 1, "new_jobs": 0}
    assert container.queue(lambda q: q.stats()).queued == 1


def test_a_batch_enqueues_each_record(container: LambdaContainer, settings: Settings) -> None:
    keys = [upload_key(f"photo {i}.jpg") for i in range(3)]
    records = [record(settings, k, size=(s := put(settings, k))["size"], etag=s["eTag"])
               for k in keys]
    assert invoke(container, *records) == {"records": 3, "jobs": 3, "new_jobs": 3}
    assert {job_for(container, settings, k)["payload"]["key"] for k in keys} == set(keys)


@pytest.mark.parametrize(
    "key",
    [
        "results/thumbs/photo.webp",  # outside uploads/
        "uploads/photo.jpg",  # not made by POST /uploads
        f"uploads/{SUB}/../photo.jpg",
        f"uploads/{SUB}/9e203e68732f4a8b8dbc8c2cc2488db5/nested/photo.jpg",
    ],
)
def test_keys_that_are_not_uploads_are_ignored(
    container: LambdaContainer, settings: Settings, key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert invoke(container, record(settings, key, size=10, etag="e")) == {
        "records": 1, "jobs": 0, "new_jobs": 0}
    assert container.queue(lambda q: q.stats()).queued == 0
    assert emf(capsys.readouterr().out, "UploadsIgnored")


def test_records_from_another_bucket_are_ignored(
    container: LambdaContainer, settings: Settings
) -> None:
    rec = record(settings, upload_key(), size=10, etag="e")
    rec["s3"]["bucket"]["name"] = settings.results_bucket
    assert invoke(container, rec) == {"records": 1, "jobs": 0, "new_jobs": 0}


@pytest.mark.parametrize(
    ("body", "content_type", "declared_size", "reason"),
    [
        (b"hello", "text/plain", None, "is not a supported image type"),
        (JPEG * 10, "image/jpeg", None, "the limit is 4096"),  # S3 says it is too large
        (JPEG, "image/jpeg", 10**9, "the limit is 4096"),  # the record says so
        (None, "image/jpeg", None, "no longer exists"),  # deleted before we looked
    ],
)
def test_refused_objects_become_a_job_that_records_the_failed_image(
    container: LambdaContainer, settings: Settings, capsys: pytest.CaptureFixture[str],
    body: bytes | None, content_type: str, declared_size: int | None, reason: str,
) -> None:
    key = upload_key()
    stored: dict[str, Any] = {"size": 100, "eTag": "gone"}
    if body is not None:
        stored = put(settings, key, body, content_type)
    rec = record(settings, key, size=declared_size or stored["size"], etag=stored["eTag"])
    assert invoke(container, rec)["new_jobs"] == 1
    assert reason in job_for(container, settings, key)["payload"]["reject_reason"]
    assert emf(capsys.readouterr().out, "UploadsRejected")


def test_a_second_upload_to_the_same_key_is_a_second_job(
    container: LambdaContainer, settings: Settings
) -> None:
    key = upload_key()
    first = put(settings, key)
    invoke(container, record(settings, key, size=first["size"], etag=first["eTag"]))
    second = put(settings, key, JPEG + b"more")
    summary = invoke(container, record(settings, key, size=second["size"], etag=second["eTag"]))
    assert summary["new_jobs"] == 1
    assert container.queue(lambda q: q.stats()).queued == 2
    # the promised id still names the first object
    assert job_for(container, settings, key)["payload"]["etag"] == first["eTag"]


def test_redis_down_fails_the_invocation(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    box = LambdaContainer(dead)
    try:
        key = upload_key()
        stored = put(settings, key)
        with pytest.raises(QueueUnavailable):
            invoke(box, record(settings, key, size=stored["size"], etag=stored["eTag"]))
    finally:
        box.close()


def test_from_post_uploads_to_the_uploader_reading_the_image_job(
    container: LambdaContainer, settings: Settings
) -> None:
    api = Api(container)
    # GIVEN a signed upload
    upload = api("POST", "/uploads", body={
        "filename": "my cat (2).png", "content_type": "image/png", "size": 600}).json
    assert api("GET", f"/jobs/{upload['job_id']}").status == 404  # nothing landed yet
    # WHEN the browser posts the file and S3 notifies the handler
    sent = httpx.post(upload["url"], data=upload["fields"],
                      files={"file": ("cat.png", JPEG, "image/png")})
    assert sent.status_code in (200, 201, 204), sent.text
    etag = s3_client(settings).head_object(
        Bucket=settings.uploads_bucket, Key=upload["key"])["ETag"].strip('"')
    invoke(container, record(settings, upload["key"], size=len(JPEG), etag=etag))
    # THEN the job the API promised exists, for the uploader only
    job = api("GET", f"/jobs/{upload['job_id']}")
    assert job.status == 200
    assert job.json["name"] == "process_uploaded_image"
    assert job.json["status"] == "queued"
    assert api("GET", f"/jobs/{upload['job_id']}", sub=OTHER).status == 404
