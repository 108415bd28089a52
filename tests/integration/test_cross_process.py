"""Every catalogue job, enqueued by name from a process that imports only ``shared``, runs
in a real ``offload worker`` process and leaves the right state in S3, SES and MongoDB.

MongoDB is the shared in-memory stand-in (``infra.local.mongo_standin``) reached over the
wire protocol, so the worker, the test and the enqueuing process see the same data.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage

from infra.local.testing import sent_emails
from shared.aws import s3_client
from shared.config import Settings
from tests.integration.procs import WorkerProcess, settings_env, slow_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def standin_uri() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.local.mongo_standin", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on "), line
    yield f"mongodb://{line.split()[-1]}/?directConnection=true"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def shared_settings(settings: Settings, standin_uri: str) -> AsyncIterator[Settings]:
    from shared.db import close_db, init_db

    s = settings.model_copy(update={"mongodb_uri": standin_uri})
    client = await init_db(s)
    yield s
    await close_db(client)


def _jpeg_rotated() -> bytes:
    image = PILImage.linear_gradient("L").resize((400, 200)).convert("RGB")
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


async def test_every_job_by_name_from_a_lean_process(
    shared_settings: Settings, moto_endpoint: str, tmp_path: Path
) -> None:
    from shared.models import Image, Order, Session, User

    s = shared_settings
    s3 = s3_client(s)
    # GIVEN users, an order from yesterday, an expired session, and an uploaded photo
    ada = await User(email=f"ada-{s.queue_name}@example.com", display_name="Ada",
                     subject=f"ada-{s.queue_name}").insert()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await Order(user_id=str(ada.id), amount_cents=1250, currency="EUR",
                reference=f"seed-{s.queue_name}", status="processed",
                created_at=yesterday).insert()
    await Session(user_id=str(ada.id), token_hash="x" * 64,
                  expires_at=datetime.now(UTC) - timedelta(hours=2)).insert()
    photo_key = f"uploads/{ada.id}/upload0001/holiday photo (1).jpg"
    s3.put_object(Bucket=s.uploads_bucket, Key=photo_key, Body=_jpeg_rotated(),
                  ContentType="image/jpeg")
    owner = str(ada.subject)  # the jobs act for Ada: her user is bound to this subject
    uid = str(ada.id)
    with slow_server() as (base, _handler):
        requests = [
            {"name": "send_welcome_email", "payload": {}},
            {"name": "send_password_reset",
             "payload": {"user_id": uid, "token": "reset_token_0123456789"}},
            {"name": "send_daily_digest", "payload": {}},
            {"name": "generate_sales_report",
             "payload": {"start_date": str(yesterday.date()), "end_date": str(date.today())}},
            {"name": "process_uploaded_image",
             "payload": {"bucket": s.uploads_bucket, "key": photo_key}},
            {"name": "cleanup_expired_sessions", "payload": {}},
            {"name": "sweep_pending_blobs", "payload": {"older_than_hours": 24}},
            {"name": "fetch_external_data", "payload": {"url": f"{base}/slow/0"}},
            {"name": "place_order",
             "payload": {"amount_cents": 999, "currency": "EUR",
                         "reference": f"demo-{s.queue_name}"}},
        ]
        worker = WorkerProcess(s, tmp_path / "worker", "--processes", "2")
        try:
            worker.wait_ready(s, timeout=40)
            # WHEN a process that imports only shared/ enqueues each by name
            done = subprocess.run(
                [sys.executable, "-m", "tests.integration.enqueue_client"],
                input=json.dumps([dict(r, owner=owner) for r in requests]),
                env=settings_env(s), capture_output=True, text=True, timeout=240,
            )
        finally:
            worker.stop()
    assert done.returncode == 0, done.stderr + worker.output()
    report = json.loads(done.stdout)
    views = {v["name"]: v for v in report["views"]}
    # THEN the client needed none of the worker's heavy modules
    assert report["modules"] == []
    # AND every job succeeded
    assert {n: v["status"] for n, v in views.items()} == {r["name"]: "done" for r in requests}
    # AND their effects are real: e-mails in SES (welcome, reset, digest, order confirmation)
    assert len(sent_emails(moto_endpoint, ada.email)) == 4
    assert views["send_daily_digest"]["result"]["sent"] >= 1
    # report files and image variants in the results bucket
    result = views["generate_sales_report"]["result"]
    csv_body = s3.get_object(Bucket=s.results_bucket, Key=result["csv_key"])["Body"].read()
    assert b"EUR" in csv_body and b"1250" in csv_body
    pdf = s3.get_object(Bucket=s.results_bucket, Key=result["pdf_key"])["Body"].read()
    assert pdf.startswith(b"%PDF")
    thumb_key = views["process_uploaded_image"]["result"]["variants"]["thumbnail"]
    thumb = PILImage.open(io.BytesIO(
        s3.get_object(Bucket=s.results_bucket, Key=thumb_key)["Body"].read()))
    assert thumb.format == "WEBP" and thumb.height > thumb.width  # EXIF rotation applied
    fetched = views["fetch_external_data"]["result"]
    assert s3.head_object(Bucket=fetched["bucket"], Key=fetched["key"])["ContentLength"] > 0
    # and MongoDB state: image done, expired session gone, order recorded and notified
    image = await Image.find_one(Image.source_key == photo_key)
    assert image is not None and image.status == "done"
    assert await Session.find(Session.user_id == uid).count() == 0
    order = await Order.find_one(Order.reference == f"demo-{s.queue_name}")
    assert order is not None and order.status == "notified"
