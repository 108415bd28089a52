"""Schemathesis against the OpenAPI document Powertools generates, in process: each generated
request becomes an API Gateway v2.0 event for ``lambda_handler`` (no HTTP server), and each
answer must be no 5xx, a documented status, and a body matching its documented schema."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import functions.api
from shared.config import Settings
from tests.test_api import SUB, LambdaContainer, LambdaContext, http_event

BASE_URL = "https://api.offload.test"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

schema = schemathesis.openapi.from_dict(json.loads(functions.api.app.get_openapi_json_schema()))


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


def to_event(request: requests.PreparedRequest) -> dict[str, Any]:
    """The v2.0 event API Gateway would send for this HTTP request."""
    url = urllib.parse.urlsplit(request.url or "/")
    event = http_event(request.method or "GET", urllib.parse.unquote(url.path), sub=SUB)
    event["rawPath"] = url.path
    event["rawQueryString"] = url.query
    params: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value  # as v2.0 does
    event["queryStringParameters"] = params or None
    event["headers"] = {"host": url.netloc, "content-type": "application/json"}
    event["headers"].update({k.lower(): v for k, v in request.headers.items()})
    body = request.body
    if body is None:
        return event
    assert isinstance(body, bytes | str), "requests prepares JSON and form bodies eagerly"
    raw = body if isinstance(body, bytes) else body.encode()
    try:
        event["body"], event["isBase64Encoded"] = raw.decode(), False
    except UnicodeDecodeError:
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    return event


def invoke(box: LambdaContainer, case: schemathesis.Case[Any]) -> schemathesis.Response:
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    request = requests.Request(
        method=kwargs["method"], url=kwargs["url"], headers=kwargs.get("headers"),
        params=kwargs.get("params"), json=kwargs.get("json"), data=kwargs.get("data"),
        cookies=kwargs.get("cookies"),
    ).prepare()
    started = time.monotonic()
    raw = box.invoke(functions.api.lambda_handler, to_event(request), LambdaContext())
    return schemathesis.Response(
        status_code=raw["statusCode"],
        headers={k.lower(): [v] for k, v in (raw.get("headers") or {}).items()},
        content=(raw.get("body") or "").encode(),
        request=request,
        elapsed=time.monotonic() - started,
        verify=True,
    )


@schema.parametrize()
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    case: schemathesis.Case[Any], container: LambdaContainer
) -> None:
    # One container per operation, shared by its examples, as a warm Lambda would be.
    response = invoke(container, case)
    case.validate_response(response, checks=CHECKS)
