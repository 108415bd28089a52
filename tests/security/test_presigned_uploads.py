"""Presigned uploads cannot write outside the caller's prefix, exceed the declared size,
change the content type or be used after expiry.

moto's S3 does not enforce POST policies (real S3 does), so this proves it on the signed
policy document: its conditions bind exactly one key, one content type, a size range and
an expiry, and its SigV4 signature (recomputed here from the test credentials) covers the
policy, so an uploader who changes any condition has no valid signature for the result.
And the S3 handler ignores objects whose key is not one ``POST /uploads`` makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import s3_events
from shared.config import Settings
from shared.s3 import decode_post_policy
from tests.faults.figures import record
from tests.test_api import SUB, Api, LambdaContainer, LambdaContext
from tests.test_s3_events import put
from tests.test_s3_events import record as s3_record

OTHER = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
SECRET = "testing"  # tests/conftest.py's AWS_SECRET_ACCESS_KEY


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    box = LambdaContainer(settings)
    yield Api(box)
    box.close()


def sigv4_policy_signature(policy_b64: str, credential: str, secret: str = SECRET) -> str:
    """The signature S3 expects for a POST policy (AWS SigV4: the policy is the string to
    sign, the key derived from the secret, date, region and service of the credential)."""
    _, day, region, service, _ = credential.split("/")
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


def tampered(policy: dict[str, Any], change: str, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(policy))
    conditions = doc["conditions"]
    if change == "key outside the prefix":
        doc["conditions"] = [{"key": key.replace(SUB, OTHER)} if c == {"key": key} else c
                             for c in conditions]
    elif change == "any key under uploads/":
        doc["conditions"] = [["starts-with", "$key", "uploads/"] if c == {"key": key} else c
                             for c in conditions]
    elif change == "bigger size":
        doc["conditions"] = [["content-length-range", 1, 10**9]
                             if isinstance(c, list) and c[0] == "content-length-range" else c
                             for c in conditions]
    elif change == "another content type":
        doc["conditions"] = [["eq", "$Content-Type", "text/html"]
                             if isinstance(c, list) and c[1:2] == ["$Content-Type"] else c
                             for c in conditions]
    elif change == "later expiry":
        doc["expiration"] = "2099-01-01T00:00:00Z"
    return doc


def test_the_signed_policy_binds_key_size_type_and_expiry(api: Api, settings: Settings) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = api("POST", "/uploads",
                   body={"filename": "cat.png", "content_type": "image/png", "size": 4096})
    assert response.status == 201, response.text
    upload = response.json
    fields = upload["fields"]
    key = upload["key"]
    policy = decode_post_policy(fields)
    conditions = policy["conditions"]
    # Exactly one key, under the caller's prefix; no prefix or ${filename} wildcard
    assert key.startswith(f"uploads/{SUB}/") and {"key": key} in conditions
    assert fields["key"] == key and "${filename}" not in key
    assert not [c for c in conditions if isinstance(c, list) and "$key" in c]
    # The declared size and type, and an expiry within the configured window
    assert ["content-length-range", 1, 4096] in conditions
    assert ["eq", "$Content-Type", "image/png"] in conditions
    assert {"bucket": settings.uploads_bucket} in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expires <= before + timedelta(seconds=settings.upload_url_expiry_seconds + 5)
    # The signature is S3's SigV4 over exactly this policy ...
    credential = fields["x-amz-credential"]
    assert credential.split("/")[2:4] == [settings.aws_region, "s3"]
    assert fields["x-amz-signature"] == sigv4_policy_signature(fields["policy"], credential)
    # ... so every change an uploader could want needs a signature they cannot make
    changes = ["key outside the prefix", "any key under uploads/", "bigger size",
               "another content type", "later expiry"]
    for change in changes:
        forged = base64.b64encode(json.dumps(tampered(policy, change, key)).encode()).decode()
        assert forged != fields["policy"], change
        assert sigv4_policy_signature(forged, credential) != fields["x-amz-signature"], change
    record("security presigned upload", bound_conditions=len(conditions),
           expiry_s=settings.upload_url_expiry_seconds, tampered_policies_refused=len(changes))


def keys_outside(upload_id: str) -> dict[str, str]:
    return {
        "another caller's prefix, encoded slash": f"uploads/{SUB}%2F..%2F{OTHER}/{upload_id}/x.jpg",
        "nested deeper": f"uploads/{SUB}/{upload_id}/sub/x.jpg",
        "dot-dot segment": f"uploads/{SUB}/{upload_id}/../../{OTHER}/x.jpg",
        "not an upload id": f"uploads/{SUB}/../x.jpg",
        "outside uploads/": f"images/{SUB}/{upload_id}/x.jpg",
        "no owner": f"uploads//{upload_id}/x.jpg",
        "leading dot-dot": f"../uploads/{SUB}/{upload_id}/x.jpg",
        "owner is a path": f"uploads/../{upload_id}/x.jpg",
    }


def test_the_s3_handler_ignores_objects_outside_an_uploaders_prefix(
    api: Api, settings: Settings
) -> None:
    upload_id = uuid.uuid4().hex
    outside = keys_outside(upload_id)
    for what, key in outside.items():
        stored_key = key.replace("%2F", "/")
        obj = put(settings, stored_key, b"\xff\xd8\xff" + b"\0" * 100)
        event = {"Records": [s3_record(settings, key, size=obj["size"], etag=obj["eTag"])]}
        summary = api.box.invoke(s3_events.lambda_handler, event, LambdaContext())
        assert summary["jobs"] == 0, what
    stats = api.box.queue(lambda q: q.stats())
    assert (stats.queued, stats.scheduled) == (0, 0)
    record("security S3 keys outside a prefix", keys_tried=len(outside), jobs_enqueued=0)
