"""shared.s3 against moto's S3 server over HTTP (and a canned server for S3's failures)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from shared import s3 as s3ops
from shared.aws import s3_client
from shared.config import Settings
from shared.errors import PermanentJobError, TransientJobError


@pytest.fixture
def s3(settings: Settings) -> Any:
    return s3_client(settings)


@contextmanager
def canned_http_server(status: int, body: bytes) -> Iterator[str]:
    """A local HTTP server answering every request with ``status`` and ``body``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def no_retry_client(service: Literal["s3", "ses"], endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, endpoint_url=endpoint, region_name="eu-west-1",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5,
                      s3={"addressing_style": "path"}),
    )


def multipart(fields: dict[str, str], file_bytes: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with the file last, as S3's POST upload requires."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.png"\r\n'
        f"Content-Type: {fields['Content-Type']}\r\n\r\n".encode() + file_bytes + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- round trips -------------------------------------------------------------------------


def test_put_get_head_round_trip_with_checksum(settings: Settings, s3: Any) -> None:
    # GIVEN some bytes
    data = "résumé ✓\n".encode() * 1000
    # WHEN they are put, read back and headed
    info = s3ops.put_object(s3, settings.results_bucket, "r/a.txt", data, "text/plain",
                            metadata={"owner": "u1"})
    got, content_type = s3ops.get_object(s3, settings.results_bucket, "r/a.txt")
    head = s3ops.head_object(s3, settings.results_bucket, "r/a.txt")
    # THEN everything agrees with the bytes' own digest
    assert got == data
    assert content_type == "text/plain"
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert info.etag == hashlib.md5(data).hexdigest()
    assert head == info
    assert s3ops.object_exists(s3, settings.results_bucket, "r/a.txt")


def test_put_sends_sha256_checksum_header(settings: Settings, s3: Any) -> None:
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        sent.update({
            k.lower(): v.decode() if isinstance(v, bytes) else v
            for k, v in request.headers.items()
        })

    s3.meta.events.register("before-send.s3.PutObject", capture)
    data = b"integrity"
    s3ops.put_object(s3, settings.results_bucket, "c.bin", data, "application/octet-stream")
    assert sent["x-amz-checksum-sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_get_with_limit_at_size_succeeds(settings: Settings, s3: Any) -> None:
    s3ops.put_object(s3, settings.results_bucket, "ten", b"0123456789", "text/plain")
    assert s3ops.get_object(s3, settings.results_bucket, "ten", max_bytes=10)[0] == b"0123456789"


# --- failures ----------------------------------------------------------------------------


def test_missing_object_and_bucket(settings: Settings, s3: Any) -> None:
    with pytest.raises(s3ops.ObjectMissing, match="nope"):
        s3ops.get_object(s3, settings.results_bucket, "nope")
    with pytest.raises(s3ops.BucketMissing, match="no such bucket"):
        s3ops.get_object(s3, "no-such-bucket-" + uuid.uuid4().hex[:8], "k")
    assert s3ops.head_object(s3, settings.results_bucket, "nope") is None
    assert not s3ops.object_exists(s3, settings.results_bucket, "nope")
    assert issubclass(s3ops.ObjectMissing, PermanentJobError)


def test_too_large_object_is_refused(settings: Settings, s3: Any) -> None:
    s3ops.put_object(s3, settings.results_bucket, "big", b"x" * 10_000, "text/plain")
    with pytest.raises(s3ops.ObjectTooLarge, match="10000 bytes; the limit is 100"):
        s3ops.get_object(s3, settings.results_bucket, "big", max_bytes=100)
    assert issubclass(s3ops.ObjectTooLarge, PermanentJobError)


def test_delete_is_idempotent(settings: Settings, s3: Any) -> None:
    s3ops.put_object(s3, settings.results_bucket, "d", b"1", "text/plain")
    s3ops.delete_object(s3, settings.results_bucket, "d")
    s3ops.delete_object(s3, settings.results_bucket, "d")
    s3ops.delete_object(s3, "no-such-bucket-" + uuid.uuid4().hex[:8], "d")
    assert not s3ops.object_exists(s3, settings.results_bucket, "d")


def test_write_to_missing_bucket_is_permanent(s3: Any) -> None:
    with pytest.raises(s3ops.BucketMissing, match="NoSuchBucket") as caught:
        s3ops.put_object(s3, "no-such-bucket-" + uuid.uuid4().hex[:8], "k", b"1", "text/plain")
    assert isinstance(caught.value, s3ops.S3Refused)
    assert isinstance(caught.value, PermanentJobError)


def test_throttling_is_transient() -> None:
    slow_down = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                 b"<Message>Please reduce your request rate.</Message></Error>")
    with canned_http_server(503, slow_down) as endpoint:
        client = no_retry_client("s3", endpoint)
        with pytest.raises(s3ops.S3Unavailable, match="SlowDown") as caught:
            s3ops.put_object(client, "bucket-x", "k", b"1", "text/plain")
    assert isinstance(caught.value, TransientJobError)


def test_unreachable_endpoint_is_transient() -> None:
    with canned_http_server(200, b"") as endpoint:
        pass  # the port is free again: connections are refused
    client = no_retry_client("s3", endpoint)
    with pytest.raises(s3ops.S3Unavailable, match="unreachable"):
        s3ops.get_object(client, "bucket-x", "k")


# --- presigned URLs ----------------------------------------------------------------------


def test_presigned_get_downloads_the_object(settings: Settings, s3: Any) -> None:
    data = b"\x89PNG fake but bytes are bytes" * 50
    s3ops.put_object(s3, settings.results_bucket, "dir/report.csv", data, "text/csv")
    url = s3ops.presigned_get(s3, settings.results_bucket, "dir/report.csv", 60,
                              filename='Sales "Q1" résumé.csv')
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
        disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Sales Q1 r_sum_.csv"')
    assert "filename*=UTF-8''Sales%20Q1%20r%C3%A9sum%C3%A9.csv" in disposition


def test_presign_expiry_is_validated(settings: Settings, s3: Any) -> None:
    with pytest.raises(ValueError, match="expires_seconds"):
        s3ops.presigned_get(s3, settings.results_bucket, "k", 0)
    with pytest.raises(ValueError, match="expires_seconds"):
        s3ops.presigned_post(s3, settings.uploads_bucket, "k", "image/png", max_bytes=10,
                             expires_seconds=8 * 24 * 3600)


def test_presigned_post_policy_binds_key_type_size_and_expiry(settings: Settings,
                                                            s3: Any) -> None:
    # GIVEN a presigned upload for one key, type and size range
    key = "uploads/u1/abc/photo.png"
    before = datetime.now(UTC).replace(microsecond=0)
    post = s3ops.presigned_post(s3, settings.uploads_bucket, key, "image/png",
                                max_bytes=5000, expires_seconds=300, min_bytes=10)
    # WHEN its policy is decoded
    policy = s3ops.decode_post_policy(post["fields"])
    conditions = policy["conditions"]
    # THEN it binds exactly those, and the expiry is five minutes out
    assert {"key": key} in conditions
    assert {"bucket": settings.uploads_bucket} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["eq", "$Content-Type", "image/png"] in conditions
    assert ["content-length-range", 10, 5000] in conditions
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    assert post["fields"]["key"] == key
    assert post["fields"]["Content-Type"] == "image/png"
    expires = datetime.strptime(post["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert policy["expiration"] == post["expires_at"]
    assert before + timedelta(seconds=299) <= expires <= before + timedelta(seconds=302)


def test_presigned_post_uploads_through_http(settings: Settings, s3: Any) -> None:
    key = "uploads/u1/xyz/pic.png"
    post = s3ops.presigned_post(s3, settings.uploads_bucket, key, "image/png",
                                max_bytes=1000, expires_seconds=60)
    payload = bytes(range(256)) * 2
    body, content_type = multipart(post["fields"], payload)
    request = urllib.request.Request(post["url"], data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201, 204)
    assert s3ops.get_object(s3, settings.uploads_bucket, key) == (payload, "image/png")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "uploads/${filename}"}, "literal"),
        ({"content_type": "image/png\r\nX-Evil: 1"}, "one non-empty line"),
        ({"content_type": " "}, "one non-empty line"),
        ({"min_bytes": 10, "max_bytes": 5}, "min_bytes"),
    ],
)
def test_presigned_post_refuses_bad_arguments(settings: Settings, s3: Any,
                                              kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"key": "uploads/a", "content_type": "image/png", "max_bytes": 10,
                            "expires_seconds": 60, **kwargs}
    with pytest.raises(ValueError, match=message):
        s3ops.presigned_post(s3, settings.uploads_bucket, **args)


def test_decode_post_policy_needs_a_policy() -> None:
    with pytest.raises(ValueError, match="no policy"):
        s3ops.decode_post_policy({"key": "k"})
    assert s3ops.decode_post_policy(
        {"policy": "eyJleHBpcmF0aW9uIjogIngiLCAiY29uZGl0aW9ucyI6IFtdfQ=="}
    ) == json.loads('{"expiration": "x", "conditions": []}')
