"""Synchronous S3 helpers over a boto3 client (functions/ calls them directly; the worker
through ``anyio.to_thread.run_sync``, usually via :class:`shared.blobs.BlobService`).

How failures surface, so the worker's retry policy does the right thing:

- a missing object: :class:`ObjectMissing`; a missing bucket: :class:`BucketMissing`
  (both permanent);
- an object larger than the caller's limit: :class:`ObjectTooLarge` (permanent);
- throttling (``SlowDown``, ``Throttling``...), 5xx, request timeouts, connection and read
  errors: :class:`S3Unavailable` (transient; retried with backoff). The client has already
  retried these a few times itself (``shared.aws`` uses botocore's "standard" mode);
- any other 4xx (``AccessDenied``, ``NoSuchBucket`` on write, ``InvalidRequest``...):
  :class:`S3Refused` (permanent: the same request will be refused again; ``BucketMissing``
  is one).

Only the standard library is imported at module level; botocore is imported when an error
has to be classified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, Required, TypedDict, Unpack
from urllib.parse import quote

from shared.errors import PermanentJobError, TransientJobError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# SigV4 presigned URLs and POST policies cannot outlive seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# The metadata key holding the hex SHA-256, for stores (moto) that do not return S3's own.
SHA256_METADATA_KEY = "sha256"

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
     "TooManyRequestsException", "RequestTimeout", "RequestTimeTooSkewed", "BadDigest",
     "InternalError", "ServiceUnavailable"}
)


class ObjectMissing(PermanentJobError):
    """The object (or its bucket) does not exist."""


class ObjectTooLarge(PermanentJobError):
    """The object is larger than the caller accepts."""


class S3Unavailable(TransientJobError):
    """S3 is throttling, failing (5xx) or unreachable for now."""


class S3Refused(PermanentJobError):
    """S3 refused the request (4xx other than not-found and throttling)."""


class BucketMissing(S3Refused):
    """The bucket does not exist: a configuration error (check ``OFFLOAD_*_BUCKET``)."""


@dataclass(frozen=True)
class ObjectInfo:
    """What we know about a stored object; ``sha256`` is hex, "" when S3 has none for it."""

    bucket: str
    key: str
    size: int
    sha256: str
    etag: str
    content_type: str


@contextmanager
def _classified(bucket: str, key: str) -> Iterator[None]:
    """Turn botocore's errors into the taxonomy in the module docstring."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )

    where = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = f"{where}: {code} {error.get('Message', '')}".rstrip()
        if code in _MISSING_CODES:
            raise ObjectMissing(f"no such object {detail}") from exc
        if code == "NoSuchBucket":
            raise BucketMissing(f"no such bucket {detail}") from exc
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            raise S3Unavailable(f"S3 unavailable for {detail}") from exc
        raise S3Refused(f"S3 refused {detail}") from exc
    except BotoCoreError as exc:
        # Connection, timeout and streaming failures; parameter validation errors are
        # BotoCoreErrors too, but they are our bugs and must not be retried as if transient.
        if isinstance(exc, ParamValidationError | NoCredentialsError
                      | PartialCredentialsError | NoRegionError):
            raise
        raise S3Unavailable(f"S3 unreachable for {where}: {exc}") from exc


def _sha256_hex(b64: str | None) -> str:
    """S3's base64 full-object checksum as hex; "" for none or a composite (multipart) one."""
    if not b64 or "-" in b64:
        return ""
    try:
        return base64.b64decode(b64, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


class PutOptions(TypedDict, total=False):
    """What :func:`put_object` may be told besides the bytes and their type."""

    # User metadata stored with the object (the SHA-256 is added to it).
    metadata: dict[str, str]
    # The caller's digest of the bytes when it has one already (so they are hashed once);
    # sent as is, so a wrong one makes S3 refuse the upload.
    sha256: bytes


def put_object(s3: S3Client, bucket: str, key: str, data: bytes, content_type: str,
               **options: Unpack[PutOptions]) -> ObjectInfo:
    """Upload ``data``; S3 verifies it against the SHA-256 we send and rejects a mismatch."""
    digest = options["sha256"] if "sha256" in options else hashlib.sha256(data).digest()
    meta = {**options.get("metadata", {}), SHA256_METADATA_KEY: digest.hex()}
    with _classified(bucket, key):
        response = s3.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=meta,
            ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
        )
    return ObjectInfo(bucket, key, len(data), digest.hex(), response["ETag"].strip('"'),
                      content_type)


def get_object(s3: S3Client, bucket: str, key: str,
               max_bytes: int | None = None) -> tuple[bytes, str]:
    """The object's bytes and content type; ObjectTooLarge before reading past ``max_bytes``."""
    with _classified(bucket, key):
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            if max_bytes is not None and response.get("ContentLength", 0) > max_bytes:
                raise ObjectTooLarge(
                    f"s3://{bucket}/{key} is {response['ContentLength']} bytes; "
                    f"the limit is {max_bytes}"
                )
            # Read one byte past the limit so a length header that lied is still caught.
            data = body.read() if max_bytes is None else body.read(max_bytes + 1)
        finally:
            body.close()
    if max_bytes is not None and len(data) > max_bytes:
        raise ObjectTooLarge(f"s3://{bucket}/{key} exceeds the limit of {max_bytes} bytes")
    return data, response.get("ContentType") or "application/octet-stream"


def head_object(s3: S3Client, bucket: str, key: str) -> ObjectInfo | None:
    """The object's size, checksum, ETag and content type; None when it does not exist."""
    try:
        with _classified(bucket, key):
            response = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ObjectMissing:
        return None
    sha256 = _sha256_hex(response.get("ChecksumSHA256"))
    if not sha256:
        sha256 = response.get("Metadata", {}).get(SHA256_METADATA_KEY, "")
    return ObjectInfo(
        bucket, key, response.get("ContentLength", 0), sha256,
        response.get("ETag", "").strip('"'),
        response.get("ContentType") or "application/octet-stream",
    )


def object_exists(s3: S3Client, bucket: str, key: str) -> bool:
    return head_object(s3, bucket, key) is not None


def delete_object(s3: S3Client, bucket: str, key: str) -> None:
    """Delete the object; deleting one that (or whose bucket) is already gone is not an error."""
    try:
        with _classified(bucket, key):
            s3.delete_object(Bucket=bucket, Key=key)
    except (ObjectMissing, BucketMissing):
        return


def _check_expiry(expires_seconds: int) -> None:
    if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")


def content_disposition(filename: str) -> str:
    """An RFC 6266 ``attachment`` header: an ASCII fallback plus the UTF-8 name."""
    cleaned = "".join(c for c in filename if c.isprintable() and c not in '"\\/').strip()
    if not cleaned:
        raise ValueError("filename has no printable characters")
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", cleaned)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


def presigned_get(s3: S3Client, bucket: str, key: str, expires_seconds: int,
                  filename: str | None = None) -> str:
    """A URL that downloads the object until it expires (as ``filename`` when given)."""
    _check_expiry(expires_seconds)
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if filename is not None:
        params["ResponseContentDisposition"] = content_disposition(filename)
    return s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)


class UploadLimits(TypedDict):
    """How big a presigned upload may be and how long its policy lasts."""

    max_bytes: Required[int]
    expires_seconds: Required[int]
    min_bytes: NotRequired[int]  # default 1: an empty upload is refused


def presigned_post(s3: S3Client, bucket: str, key: str, content_type: str,
                   **limits: Unpack[UploadLimits]) -> dict[str, Any]:
    """A browser upload bound to exactly ``key``, ``content_type`` and a size range.

    Returns ``{"url", "fields", "expires_at"}``; ``expires_at`` is the policy's own
    ``expiration`` (ISO 8601, UTC). Real S3 enforces the policy; moto does not.
    """
    max_bytes, expires_seconds = limits["max_bytes"], limits["expires_seconds"]
    min_bytes = limits.get("min_bytes", 1)
    _check_expiry(expires_seconds)
    if "${filename}" in key:
        raise ValueError("key must be literal: '${filename}' would let the uploader choose it")
    if not content_type.strip() or any(c in content_type for c in "\r\n"):
        raise ValueError("content_type must be one non-empty line")
    if not 0 <= min_bytes <= max_bytes:
        raise ValueError("need 0 <= min_bytes <= max_bytes")
    post = s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["eq", "$Content-Type", content_type],
            ["content-length-range", min_bytes, max_bytes],
        ],
        ExpiresIn=expires_seconds,
    )
    fields: dict[str, str] = dict(post["fields"])
    return {
        "url": post["url"],
        "fields": fields,
        "expires_at": decode_post_policy(fields)["expiration"],
    }


def decode_post_policy(fields: dict[str, str]) -> dict[str, Any]:
    """The signed policy document of a presigned POST (``fields["policy"]``), decoded."""
    raw = fields.get("policy") or fields.get("Policy")
    if not raw:
        raise ValueError("the fields carry no policy")
    document: dict[str, Any] = json.loads(base64.b64decode(raw))
    return document
