"""Hostile requests to the API: oversized bodies are 413 before anything parses them,
bodies that are not JSON are 415 or 422, and upload filenames with path traversal or odd
Unicode either are refused (422) or become one literal key segment under the caller's own
prefix. Schemathesis over the whole OpenAPI document (no 5xx) is tests/test_openapi_fuzz.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from functions import s3_events
from shared.api_models import UploadKey
from shared.config import Settings
from shared.s3 import decode_post_policy
from tests.faults.figures import record
from tests.test_api import SUB, Api, LambdaContainer, LambdaContext, assert_error, http_event
from tests.test_s3_events import record as s3_record

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
BODY_ROUTES = [("POST", "/jobs/generate_sales_report"), ("POST", "/uploads"),
               ("POST", "/jobs/" + "0" * 32 + "/retry")]


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    box = LambdaContainer(settings.model_copy(update={"api_max_body_bytes": 4096}))
    yield Api(box)
    box.close()


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("encoding", ["text", "base64"])
def test_oversized_bodies_are_413_on_every_route(
    api: Api, method: str, path: str, encoding: str
) -> None:
    raw = json.dumps({**REPORT, "pad": "x" * 5000})
    event = http_event(method, path, raw_body=raw)
    if encoding == "base64":
        event.update(body=base64.b64encode(raw.encode()).decode(), isBase64Encoded=True)
    response = api.box.invoke(api.handler, event, LambdaContext())
    assert response["statusCode"] == 413, response
    assert json.loads(response["body"])["error"]["details"] == {"limit_bytes": 4096}


@pytest.mark.parametrize(("content_type", "raw", "status"), [
    ("text/plain", json.dumps(REPORT), 415),
    ("application/xml", "<report/>", 415),
    ("application/x-www-form-urlencoded", "start_date=2026-11-01", 415),
    ("multipart/form-data", "--x--", 415),
    ("multipart/form-data; boundary=x", "--x\r\n\r\n--x--", 415),
    ("application/json", "{\"start_date\": \"2026-", 422),  # truncated
    ("application/json", "[1, 2, 3]", 422),
    ("application/json", "\"just a string\"", 422),
    ("application/json", "{\"start_date\": NaN}", 422),
    ("application/json", "{\"a\": " * 5000 + "1" + "}" * 5000, 413),  # deep nesting, big
    ("application/json", "{\"a\": " * 400 + "1" + "}" * 400, 422),  # deep nesting
])
@pytest.mark.parametrize("path", ["/jobs/generate_sales_report", "/uploads"])
def test_bodies_that_are_not_the_expected_json_are_refused(
    api: Api, content_type: str, raw: str, status: int, path: str
) -> None:
    response = api("POST", path, raw_body=raw, headers={"content-type": content_type})
    code = {413: "payload_too_large", 415: "unsupported_media_type",
            422: "validation_failed"}[status]
    assert_error(response, status, code)


HOSTILE_NAMES = [
    "..", ".", "../../../etc/passwd", "..\\..\\windows\\win.ini", "a/../../b.jpg",
    "/absolute.jpg", "photo.jpg\x00.exe", "line\nbreak.jpg", "tab\tname.jpg",
    "\u202egpj.exe",  # right-to-left override: shows as "exe.jpg"
    " leading.jpg", "trailing.jpg ", "x" * 201 + ".jpg", "",
    "${filename}.jpg",  # S3 would substitute a name of the uploader's choosing
]
SAFE_ODD_NAMES = [
    "\uff50\uff48\uff4f\uff54\uff4f.jpg",  # fullwidth letters
    "café.jpg", "cafe\u0301.jpg",  # composed and decomposed accents
    "照片.png", "🙂.webp", "%2e%2e%2fescape.jpg", "a+b c.jpg", "....jpg",
    "con.jpg", "photo.jpg.exe", "'; DROP TABLE uploads;--.jpg",
]


@pytest.mark.parametrize("filename", HOSTILE_NAMES)
def test_traversal_and_control_characters_in_filenames_are_422(api: Api, filename: str) -> None:
    body = {"filename": filename, "content_type": "image/jpeg", "size": 100}
    error = assert_error(api("POST", "/uploads", body=body), 422, "validation_failed")
    assert ["body", "filename"] in [d["loc"] for d in error["details"]]


@pytest.mark.parametrize("filename", SAFE_ODD_NAMES)
def test_odd_unicode_filenames_stay_one_literal_segment_under_the_callers_prefix(
    api: Api, settings: Settings, filename: str
) -> None:
    body = {"filename": filename, "content_type": "image/jpeg", "size": 100}
    response = api("POST", "/uploads", body=body)
    assert response.status == 201, response.text
    upload = response.json
    key = upload["key"]
    # One literal segment, under uploads/<caller>/<upload id>/, bound so by the policy
    assert key == f"uploads/{SUB}/{upload['upload_id']}/{filename}"
    assert key.split("/")[:2] == ["uploads", SUB] and len(key.split("/")) == 4
    conditions = decode_post_policy(upload["fields"])["conditions"]
    assert {"key": key} in conditions
    assert not [c for c in conditions if isinstance(c, list) and c[1] == "$key"]
    parsed = UploadKey.parse(key)
    assert parsed is not None and parsed.owner == SUB and parsed.filename == filename
    # ... and the S3 notification for it (key URL-encoded by S3) maps back to the caller
    event = {"Records": [s3_record(settings, key, size=100, etag="0" * 32)]}
    summary = api.box.invoke(s3_events.lambda_handler, event, LambdaContext())
    assert summary["jobs"] == 1
    meta = api.box.queue(lambda q: q.owned_meta(upload["job_id"], SUB))
    assert json.loads(meta["payload"])["key"] == key


def test_figures() -> None:
    record("hostile API", oversized_routes=len(BODY_ROUTES),
           refused_filenames=len(HOSTILE_NAMES), odd_filenames_kept_safe=len(SAFE_ODD_NAMES))
