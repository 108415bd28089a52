"""functions/gate: what the API refuses before Powertools' router sees a request, read from
v2.0 events built from the shared sample (no Redis: these answers need no queue)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from functions.gate import is_http_event, unreadable_body
from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from tests.conftest import load_event

LIMIT = 1024


def request(body: Any, *, content_type: str = "application/json",
            base64_encoded: bool = False) -> APIGatewayProxyEventV2:
    event = load_event("apigw-http-v2-post-job.json")
    event["headers"]["content-type"] = content_type
    event.update(body=body, isBase64Encoded=base64_encoded)
    return APIGatewayProxyEventV2(event)


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON", ""])
def test_a_json_body_within_the_limit_is_let_through(content_type: str) -> None:
    # GIVEN a JSON body of any spelling of the JSON media type (or none)
    # WHEN the gate reads it
    # THEN it refuses nothing
    assert unreadable_body(request('{"a": 1}', content_type=content_type), LIMIT) is None


def test_no_body_is_let_through() -> None:
    assert unreadable_body(request(None), LIMIT) is None


def test_the_limit_counts_decoded_bytes_and_comes_before_any_other_check() -> None:
    # GIVEN bodies one byte over the limit: base64 of bytes that are not UTF-8, and text
    over = b"\xff" * (LIMIT + 1)
    encoded = request(base64.b64encode(over).decode(), content_type="text/plain",
                      base64_encoded=True)
    text = request("é" * (LIMIT // 2 + 1))  # 2 bytes each in UTF-8
    # WHEN the gate reads them / THEN both are 413 with the limit, not 422 or 415
    for refused in (unreadable_body(encoded, LIMIT), unreadable_body(text, LIMIT)):
        assert isinstance(refused, PayloadTooLarge)
        assert refused.details == {"limit_bytes": LIMIT}


@pytest.mark.parametrize(("body", "base64_encoded"), [
    (base64.b64encode(b"\xff\xfe{}").decode(), True),  # not UTF-8
    ("not base64 at all!", True),
    ("\ud800", False),  # a lone surrogate: no UTF-8 encoding exists
    (12345, False),  # not a string: no API Gateway body looks like this
])
def test_a_body_that_is_not_utf8_text_is_422(body: Any, base64_encoded: bool) -> None:
    refused = unreadable_body(request(body, base64_encoded=base64_encoded), LIMIT)
    assert isinstance(refused, ValidationFailed)
    assert refused.details == [
        {"loc": ["body"], "type": "json_invalid", "msg": "the body is not UTF-8 text"}]


@pytest.mark.parametrize("content_type", [
    "text/plain", "multipart/form-data", "application/x-www-form-urlencoded",
    "application/jsonp"])
def test_a_body_of_another_media_type_is_415(content_type: str) -> None:
    refused = unreadable_body(request("{}", content_type=content_type), LIMIT)
    assert isinstance(refused, UnsupportedMediaType)
    assert refused.details == {"content_type": content_type}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: None, True),
    (lambda e: e.pop("rawPath"), False),
    (lambda e: e["requestContext"].pop("stage"), False),
    (lambda e: e["requestContext"]["http"].pop("method"), False),
    (lambda e: e.update(headers=["content-type"]), False),
    (lambda e: e.update(headers=None), True),  # API Gateway omits headers when none came
])
def test_what_counts_as_an_http_api_request(change: Any, expected: bool) -> None:
    event = load_event("apigw-http-v2-post-job.json")
    change(event)
    assert is_http_event(event) is expected
