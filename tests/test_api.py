"""functions/api through ``lambda_handler`` with API Gateway v2.0 events, against the private
Redis and moto's server: every route, every error code, owners, idempotency, long-poll,
abort, retention, and the Lambda container's connection reuse.

Also home of the harness the other handler tests share: ``LambdaContainer`` runs every
invocation on one dedicated thread (a Lambda container is single-threaded and keeps its
event loop between invocations), and ``http_event`` builds v2.0 events from the sample.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from functions import container as lambda_state
from infra.local.private_redis import free_port
from shared.api_models import UploadKey
from shared.aws import s3_client
from shared.config import Settings
from shared.queue import DeadLetter, Keys, record_dead_letter
from shared.s3 import decode_post_policy, head_object
from tests.conftest import load_event

T = TypeVar("T")

SUB = "7d6c1f2e-0c3a-4b8e-9f1d-2a5b6c7d8e9f"  # the sample's caller
OTHER = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


# --- harness (shared with the other handler tests) ----------------------------------------


@dataclass
class LambdaContext:
    """The attributes the Lambda runtime's context object has, which Powertools reads."""

    function_name: str = "offload-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:offload-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/offload-test"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class LambdaContainer:
    """One Lambda container: every invocation runs on the same single thread."""

    def __init__(self, settings: Settings) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda")
        self.invoke(lambda_state.configure, settings)

    def invoke(self, fn: Callable[..., T], *args: Any) -> T:
        return self._thread.submit(fn, *args).result()

    async def ainvoke(self, fn: Callable[..., T], *args: Any) -> T:
        """Invoke without blocking the test's loop (where the worker fixture runs)."""
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    def queue(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work(queue)`` with the container's own connected JobQueue."""
        result: T = self.invoke(lambda_state.run, _as_coroutine(work))
        return result

    async def aqueue(self, work: Callable[[Any], Awaitable[T]]) -> T:
        result: T = await self.ainvoke(lambda_state.run, _as_coroutine(work))
        return result

    def close(self) -> None:
        self.invoke(lambda_state.configure, None)
        self._thread.shutdown()


def _as_coroutine(
    work: Callable[[Any], Awaitable[T]],
) -> Callable[[Any], Coroutine[Any, Any, T]]:
    # coredis commands are awaitables, not coroutines; the loop runs coroutines.
    async def call(queue: Any) -> T:
        return await work(queue)

    return call


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


# The default caller is in the admin group (as API Gateway passes a Cognito token's
# groups), which the company-wide report needs; role tests pass their own groups.
ADMIN_GROUPS = "[admin]"


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    sub: str | None = SUB,
    groups: str | None = ADMIN_GROUPS,
    claims: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API v2.0 event: the shared sample with this request in it."""
    event = load_event("apigw-http-v2-post-job.json")
    event["routeKey"] = "$default"
    event["rawPath"] = path
    event["requestContext"]["routeKey"] = "$default"
    event["requestContext"]["http"].update(method=method, path=path)
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    event.pop("pathParameters", None)
    event["rawQueryString"] = urllib.parse.urlencode(query or {})
    if query:
        event["queryStringParameters"] = dict(query)
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if raw_body is None and body is not None:
        raw_body = json.dumps(body)
    if raw_body is None:
        event.pop("body", None)
        event["headers"].pop("content-length", None)
    else:
        event["body"] = raw_body
        event["headers"]["content-length"] = str(len(raw_body.encode()))
    token = event["requestContext"]["authorizer"]["jwt"]["claims"]
    if sub is None:
        del event["requestContext"]["authorizer"]
    else:
        token["sub"] = sub
        if groups is not None:
            token["cognito:groups"] = groups
        token.update(claims or {})
    return event


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def to_response(raw: dict[str, Any]) -> ApiResponse:
    return ApiResponse(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")


class Api:
    """Calls functions.api.lambda_handler the way API Gateway does."""

    def __init__(self, box: LambdaContainer) -> None:
        import functions.api

        self.box = box
        self.handler = functions.api.lambda_handler
        self.last_event: dict[str, Any] = {}

    def __call__(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        self.last_event = http_event(method, path, **kwargs)
        return to_response(self.box.invoke(self.handler, self.last_event, LambdaContext()))

    async def acall(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        event = http_event(method, path, **kwargs)
        return to_response(await self.box.ainvoke(self.handler, event, LambdaContext()))


@pytest.fixture
def api(container: LambdaContainer) -> Api:
    return Api(container)


def assert_error(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error: dict[str, Any] = response.json["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]
    return error


# --- enqueue -------------------------------------------------------------------------------


def test_sample_event_enqueues_a_job_the_caller_can_read(
    api: Api, container: LambdaContainer
) -> None:
    # GIVEN the real sample event, its caller in the admin group the company-wide report needs
    event = load_event("apigw-http-v2-post-job.json")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = ADMIN_GROUPS
    # WHEN it reaches the handler
    created = to_response(container.invoke(api.handler, event, LambdaContext()))
    # THEN a job is accepted, queued, and linked
    assert created.status == 202, created.text
    job = created.json
    assert set(job) == {"id", "name", "status", "links"}
    assert job["name"] == "generate_sales_report"
    assert job["status"] == "queued"
    assert job["links"] == {"self": f"/jobs/{job['id']}"}
    # AND its owner reads it with its timestamps
    read = api("GET", f"/jobs/{job['id']}")
    assert read.status == 200
    assert read.json["status"] == "queued"
    assert read.json["tries"] == 0
    enqueued = datetime.fromisoformat(read.json["enqueued_at"])
    assert abs((datetime.now(UTC) - enqueued).total_seconds()) < 30
    # AND the API request id travels with the job as its correlation id
    meta = container.queue(lambda q: q.owned_meta(job["id"], SUB))
    assert meta["correlation_id"] == event["requestContext"]["requestId"]


def test_enqueue_counts_the_job_by_name_in_emf(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    assert api("POST", "/jobs/generate_sales_report", body=REPORT).status == 202
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith('{"_aws"')]
    counted = [b for b in blobs if "JobsEnqueued" in b]
    assert len(counted) == 1
    assert counted[0]["job"] == "generate_sales_report"
    assert counted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Offload"


def test_unknown_job_is_404(api: Api) -> None:
    assert_error(api("POST", "/jobs/no_such_job", body={}), 404, "not_found")


def test_job_not_enqueueable_over_http_is_403(api: Api) -> None:
    body = {"user_id": "0123456789abcdef01234567", "token": "t" * 20}
    assert_error(api("POST", "/jobs/send_password_reset", body=body), 403, "forbidden")


def test_invalid_body_is_422_listing_each_field(api: Api) -> None:
    response = api("POST", "/jobs/generate_sales_report",
                   body={"start_date": "not a date", "colour": "red"})
    error = assert_error(response, 422, "validation_failed")
    by_loc = {tuple(d["loc"]): d["type"] for d in error["details"]}
    assert by_loc == {
        ("body", "start_date"): "date_from_datetime_parsing",
        ("body", "end_date"): "missing",
        ("body", "colour"): "extra_forbidden",
    }
    assert all(d["msg"] for d in error["details"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("start_date", 123, "expected a date as YYYY-MM-DD"),
        ("start_date", "2026-13-01", "month value is outside expected range"),
        ("start_date", "2026-11-01T10:00:00", "expected a date as YYYY-MM-DD"),
        ("currency", 7, "expected a string"),
    ],
)
def test_a_wrong_type_says_the_expected_format(
    api: Api, field: str, value: object, expected: str
) -> None:
    # GIVEN a report request with one field of the wrong type or format
    body: dict[str, object] = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
    body[field] = value
    # WHEN it is enqueued
    error = assert_error(api("POST", "/jobs/generate_sales_report", body=body), 422,
                         "validation_failed")
    # THEN the field's message says what to send, not pydantic's internals
    [detail] = error["details"]
    assert detail["loc"] == ["body", field]
    assert expected in detail["msg"]
    assert "Datetimes provided" not in detail["msg"]


def test_cross_field_rule_of_the_input_model_is_422(api: Api) -> None:
    body = {"start_date": "2026-11-27", "end_date": "2026-11-01"}
    error = assert_error(api("POST", "/jobs/generate_sales_report", body=body), 422,
                         "validation_failed")
    assert "end_date must not be before start_date" in error["details"][0]["msg"]


@pytest.mark.parametrize(
    ("raw_body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 422, "validation_failed"),
        ('["a", "list"]', "application/json", 422, "validation_failed"),
        (None, "application/json", 422, "validation_failed"),
        ("start_date=2026-11-01", "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(
    api: Api, raw_body: str | None, content_type: str, status: int, code: str
) -> None:
    response = api("POST", "/jobs/generate_sales_report", raw_body=raw_body,
                   headers={"content-type": content_type})
    assert_error(response, status, code)


def test_multipart_and_binary_bodies_are_refused_before_parsing(
    api: Api, container: LambdaContainer
) -> None:
    # multipart without a boundary: Powertools would raise a bare ValueError (a 500)
    assert_error(api("POST", "/uploads", raw_body="--x--",
                     headers={"content-type": "multipart/form-data"}), 415,
                 "unsupported_media_type")
    # API Gateway base64-encodes a body that is not text: not UTF-8 JSON, so 422
    event = http_event("POST", "/jobs/generate_sales_report", raw_body="x")
    event.update(body=base64.b64encode(b"\xff\xfe{}").decode(), isBase64Encoded=True)
    response = to_response(container.invoke(api.handler, event, LambdaContext()))
    error = assert_error(response, 422, "validation_failed")
    assert error["details"][0]["type"] == "json_invalid"
    # a base64 body that is JSON is read as JSON
    event = http_event("POST", "/jobs/generate_sales_report", raw_body="x")
    event.update(body=base64.b64encode(json.dumps(REPORT).encode()).decode(),
                 isBase64Encoded=True)
    assert container.invoke(api.handler, event, LambdaContext())["statusCode"] == 202


def test_body_over_the_configured_limit_is_413(api: Api, container: LambdaContainer) -> None:
    limit = container.invoke(lambda_state.settings).api_max_body_bytes
    padding = "x" * limit
    response = api("POST", "/jobs/generate_sales_report", body={**REPORT, "pad": padding})
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"] == {"limit_bytes": limit}


def test_delay_seconds_schedules_the_job(api: Api) -> None:
    created = api("POST", "/jobs/generate_sales_report", body=REPORT,
                  query={"delay_seconds": "3600", "priority": "high"})
    assert created.status == 202
    assert created.json["status"] == "scheduled"
    job = api("GET", f"/jobs/{created.json['id']}").json
    assert job["status"] == "scheduled"
    due = datetime.fromisoformat(job["scheduled_for"])
    assert timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)


def test_run_at_schedules_the_job_at_that_time(api: Api) -> None:
    run_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    created = api("POST", "/jobs/generate_sales_report", body=REPORT,
                  query={"run_at": run_at.isoformat()})
    assert created.status == 202
    job = api("GET", f"/jobs/{created.json['id']}").json
    assert abs(datetime.fromisoformat(job["scheduled_for"]) - run_at) < timedelta(seconds=2)


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"delay_seconds": "10", "run_at": "2030-01-01T00:00:00Z"}, ["query", "run_at"]),
        ({"run_at": "2030-01-01T00:00:00"}, ["query", "run_at"]),  # no time zone
        ({"delay_seconds": "-1"}, ["query", "delay_seconds"]),
        ({"priority": "urgent"}, ["query", "priority"]),
    ],
)
def test_bad_schedule_options_are_422(api: Api, query: dict[str, str], loc: list[str]) -> None:
    response = api("POST", "/jobs/generate_sales_report", body=REPORT, query=query)
    error = assert_error(response, 422, "validation_failed")
    assert loc in [d["loc"] for d in error["details"]]


def test_pipeline_job_lists_its_steps(api: Api) -> None:
    order = {"amount_cents": 1250,
             "currency": "EUR", "reference": "ord-1"}
    created = api("POST", "/jobs/place_order", body=order)
    assert created.status == 202
    job = api("GET", f"/jobs/{created.json['id']}").json
    assert job["name"] == "place_order"
    assert [s["name"] for s in job["steps"]] == ["validate_order", "process_order",
                                                  "notify_order"]
    assert job["steps"][-1]["job_id"] == created.json["id"]
    assert {s["status"] for s in job["steps"]} <= {"queued", "scheduled"}


# --- idempotency ---------------------------------------------------------------------------


def test_same_idempotency_key_from_same_caller_returns_the_same_job(
    api: Api, container: LambdaContainer
) -> None:
    headers = {"Idempotency-Key": "order-42-report"}
    first = api("POST", "/jobs/generate_sales_report", body=REPORT, headers=headers)
    second = api("POST", "/jobs/generate_sales_report", body=REPORT, headers=headers)
    assert first.status == second.status == 202
    assert first.json["id"] == second.json["id"]
    # never a second job in the queue
    assert container.queue(lambda q: q.stats()).queued == 1


def test_idempotency_key_is_per_caller(api: Api) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    mine = api("POST", "/jobs/generate_sales_report", body=REPORT, headers=headers)
    theirs = api("POST", "/jobs/generate_sales_report", body=REPORT, headers=headers, sub=OTHER)
    assert mine.status == theirs.status == 202
    assert mine.json["id"] != theirs.json["id"]


def test_idempotency_key_reused_with_another_payload_is_409(api: Api) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert api("POST", "/jobs/generate_sales_report", body=REPORT, headers=headers).status == 202
    other = {**REPORT, "currency": "EUR"}
    response = api("POST", "/jobs/generate_sales_report", body=other, headers=headers)
    assert_error(response, 409, "conflict")


def test_malformed_idempotency_key_is_422(api: Api) -> None:
    response = api("POST", "/jobs/generate_sales_report", body=REPORT,
                   headers={"Idempotency-Key": "x" * 300})
    assert_error(response, 422, "validation_failed")


# --- identity and ownership ----------------------------------------------------------------


@pytest.mark.parametrize("sub", [None, "", "a/b", " padded"])
def test_missing_or_unusable_caller_identity_is_401(api: Api, sub: str | None) -> None:
    for method, path in [("POST", "/jobs/generate_sales_report"), ("POST", "/uploads"),
                         ("GET", "/jobs/" + "0" * 32), ("GET", "/jobs")]:
        body = REPORT if path.endswith("report") else (
            {"filename": "a.png", "content_type": "image/png", "size": 10}
            if path == "/uploads" else None)
        query = {"status": "failed"} if path == "/jobs" else None
        response = api(method, path, body=body, query=query, sub=sub)
        assert_error(response, 401, "unauthorized")


def test_another_caller_cannot_see_abort_or_retry_my_job(
    api: Api, container: LambdaContainer
) -> None:
    job_id = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
    assert_error(api("GET", f"/jobs/{job_id}", sub=OTHER), 404, "not_found")
    assert_error(api("DELETE", f"/jobs/{job_id}", sub=OTHER), 404, "not_found")
    _dead_letter(container, job_id, SUB)
    assert_error(api("POST", f"/jobs/{job_id}/retry", sub=OTHER), 404, "not_found")
    assert api("GET", "/dead-letters", sub=OTHER).json == {"items": []}
    # and the owner still can
    assert api("GET", f"/jobs/{job_id}").status == 200


def test_unknown_job_id_is_404_and_malformed_id_is_422(api: Api) -> None:
    assert_error(api("GET", f"/jobs/{uuid.uuid4().hex}"), 404, "not_found")
    assert_error(api("GET", "/jobs/not-an-id"), 422, "validation_failed")


# --- abort ---------------------------------------------------------------------------------


def test_abort_a_scheduled_job_then_409(api: Api) -> None:
    job_id = api("POST", "/jobs/generate_sales_report", body=REPORT,
                 query={"delay_seconds": "600"}).json["id"]
    aborted = api("DELETE", f"/jobs/{job_id}")
    assert aborted.status == 200, aborted.text
    assert aborted.json["status"] == "aborted"
    assert api("GET", f"/jobs/{job_id}").json["status"] == "aborted"
    assert_error(api("DELETE", f"/jobs/{job_id}"), 409, "conflict")


# --- dead letters --------------------------------------------------------------------------


def _dead_letter(box: LambdaContainer, job_id: str, owner: str) -> None:
    """Record a dead letter exactly as the worker's retry policy does."""
    settings = box.invoke(lambda_state.settings)
    letter = DeadLetter(
        id=job_id, name="generate_sales_report", owner=owner, payload=REPORT,
        error_type="TransientJobError", error="S3 unavailable", tries=3,
        failed_at=datetime.now(UTC),
    )
    box.queue(lambda q: record_dead_letter(
        q.redis, Keys(settings.queue_name), settings.dead_letter_retention_seconds, letter))


def test_dead_letters_are_listed_and_retried_once(api: Api, container: LambdaContainer) -> None:
    job_id = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
    _dead_letter(container, job_id, SUB)

    listed = api("GET", "/dead-letters")
    assert listed.status == 200
    [item] = listed.json["items"]
    assert item["id"] == job_id
    assert item["payload"] == REPORT
    assert item["error_type"] == "TransientJobError"
    assert item["links"] == {"self": f"/jobs/{job_id}", "retry": f"/jobs/{job_id}/retry"}

    retried = api("POST", f"/jobs/{job_id}/retry")
    assert retried.status == 202
    assert retried.json["id"] != job_id
    assert api("GET", f"/jobs/{retried.json['id']}").json["status"] == "queued"
    assert api("GET", "/dead-letters").json == {"items": []}
    assert_error(api("POST", f"/jobs/{job_id}/retry"), 404, "not_found")


def test_listing_an_unknown_status_or_a_forged_cursor_is_422(api: Api) -> None:
    assert_error(api("GET", "/jobs", query={"status": "exploded"}), 422, "validation_failed")
    error = assert_error(api("GET", "/jobs", query={"next": "bm90LWEtY3Vyc29y"}), 422,
                         "validation_failed")
    assert error["details"][0]["loc"] == ["query", "next"]
    assert api("GET", "/jobs", query={"status": "succeeded"}).json == {"items": [],
                                                                        "next": None}


# --- long-poll -------------------------------------------------------------------------------


def test_long_poll_waits_for_an_unfinished_job_then_returns_it(api: Api) -> None:
    job_id = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
    started = time.monotonic()
    response = api("GET", f"/jobs/{job_id}", query={"wait": "2"})
    elapsed = time.monotonic() - started
    assert response.status == 200
    assert response.json["status"] == "queued"
    assert 1.8 <= elapsed < 6


def test_long_poll_beyond_20_seconds_is_422(api: Api) -> None:
    response = api("GET", f"/jobs/{uuid.uuid4().hex}", query={"wait": "21"})
    assert_error(response, 422, "validation_failed")


# --- uploads ---------------------------------------------------------------------------------


def test_upload_is_a_presigned_post_bound_to_type_size_key_and_expiry(
    api: Api, settings: Settings
) -> None:
    # GIVEN a caller about to upload a photo
    request = {"filename": "holiday photo (1).jpg", "content_type": "image/jpeg", "size": 2048}
    # WHEN they ask for an upload
    before = datetime.now(UTC).replace(microsecond=0)
    response = api("POST", "/uploads", body=request)
    # THEN they get a form for exactly that key under their prefix
    assert response.status == 201, response.text
    upload = response.json
    key = f"uploads/{SUB}/{upload['upload_id']}/holiday photo (1).jpg"
    assert upload["key"] == key
    assert upload["fields"]["key"] == key
    assert upload["max_bytes"] == 2048
    assert upload["links"] == {"job": f"/jobs/{upload['job_id']}"}
    parsed = UploadKey.parse(key)
    assert parsed is not None
    assert upload["job_id"] == parsed.job_id(settings.uploads_bucket)
    # AND the signed policy binds bucket, key, content type, size range and expiry
    policy = decode_post_policy(upload["fields"])
    conditions = policy["conditions"]
    assert {"bucket": settings.uploads_bucket} in conditions
    assert {"key": key} in conditions
    assert ["eq", "$Content-Type", "image/jpeg"] in conditions
    assert ["content-length-range", 1, 2048] in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expires == datetime.fromisoformat(upload["expires_at"].replace("Z", "+00:00"))
    window = timedelta(seconds=settings.upload_url_expiry_seconds)
    assert before + window - timedelta(seconds=5) <= expires <= before + window + timedelta(
        seconds=5)
    # AND moto's S3 accepts an upload made with it
    photo = b"\xff\xd8\xff" + b"\0" * 2000
    sent = httpx.post(upload["url"], data=upload["fields"],
                      files={"file": ("photo.jpg", photo, "image/jpeg")})
    assert sent.status_code in (200, 201, 204), sent.text
    stored = head_object(s3_client(settings), settings.uploads_bucket, key)
    assert stored is not None
    assert (stored.size, stored.content_type) == (len(photo), "image/jpeg")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"filename": "a.png", "content_type": "image/png", "size": 10**12}, ["body", "size"]),
        ({"filename": "a.png", "content_type": "image/png", "size": 0}, ["body", "size"]),
        ({"filename": "a.txt", "content_type": "text/plain", "size": 10},
         ["body", "content_type"]),
        ({"filename": "a/b.png", "content_type": "image/png", "size": 10},
         ["body", "filename"]),
        ({"filename": "..", "content_type": "image/png", "size": 10}, ["body", "filename"]),
        ({"filename": "a.png", "content_type": "image/png"}, ["body", "size"]),
    ],
)
def test_bad_upload_requests_are_422(api: Api, body: dict[str, Any], loc: list[str]) -> None:
    error = assert_error(api("POST", "/uploads", body=body), 422, "validation_failed")
    assert loc in [d["loc"] for d in error["details"]]


# --- health, docs, routing -------------------------------------------------------------------


def test_health_needs_no_identity(api: Api) -> None:
    response = api("GET", "/health", sub=None)
    assert response.status == 200
    assert response.json == {"status": "ok"}


def test_openapi_json_and_swagger_ui(api: Api) -> None:
    document = api("GET", "/openapi.json", sub=None)
    assert document.status == 200
    schema = document.json
    assert schema["openapi"].startswith("3.")
    assert {"/jobs/{name}", "/jobs/{job_id}", "/jobs", "/jobs/{job_id}/retry", "/uploads",
            "/health", "/dead-letters", "/jobs/{job_id}/downloads/{file_name}"} <= set(
        schema["paths"])
    titles = {s["title"] for s in schema["components"]["schemas"]["JobCreate"]["anyOf"]}
    assert titles == {"send_welcome_email", "generate_sales_report", "fetch_external_data",
                      "place_order"}
    swagger = api("GET", "/swagger", sub=None)
    assert swagger.status == 200
    assert "swagger-ui" in swagger.text


def test_unknown_route_is_404_in_the_error_shape(api: Api) -> None:
    assert_error(api("GET", "/nowhere"), 404, "not_found")
    assert_error(api("PATCH", "/jobs/generate_sales_report", body=REPORT), 404, "not_found")


# --- Redis down ------------------------------------------------------------------------------


@pytest.fixture
def redis_down(settings: Settings) -> Iterator[Api]:
    # Nothing listens on this port: every connection is refused.
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    box = LambdaContainer(dead)
    yield Api(box)
    box.close()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/health", {"sub": None}),
        ("POST", "/jobs/generate_sales_report", {"body": REPORT}),
        ("GET", "/jobs/" + "0" * 32, {}),
        ("DELETE", "/jobs/" + "0" * 32, {}),
        ("GET", "/jobs", {"query": {"status": "failed"}}),
        ("GET", "/dead-letters", {}),
        ("POST", "/jobs/" + "0" * 32 + "/retry", {}),
    ],
)
def test_redis_down_is_503_with_retry_after(
    redis_down: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = redis_down(method, path, **kwargs)
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) > 0


# --- the container ---------------------------------------------------------------------------


def _client_count(box: LambdaContainer) -> int:
    clients = box.queue(lambda q: q.redis.client_list())
    return len(clients)


def test_warm_invocations_reuse_one_connection(api: Api, container: LambdaContainer) -> None:
    assert api("GET", "/health").status == 200
    queue_before = container.invoke(lambda: lambda_state.current().queue)
    clients = _client_count(container)
    for _ in range(5):
        assert api("POST", "/jobs/generate_sales_report", body=REPORT).status == 202
    assert container.invoke(lambda: lambda_state.current().queue) is queue_before
    assert _client_count(container) == clients


def test_after_a_snapstart_restore_the_next_call_reconnects(
    api: Api, container: LambdaContainer
) -> None:
    job_id = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
    before = container.invoke(lambda_state.current)
    container.invoke(lambda_state.reset_connections)  # what the after-restore hook runs
    assert api("GET", f"/jobs/{job_id}").status == 200
    assert container.invoke(lambda_state.current) is not before


# --- with a real worker ----------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Retention shortened from 24 h, still far beyond Streaq's 5-minute default; a small
    # body limit so the 413 test stays small.
    return settings.model_copy(
        update={"result_retention_seconds": 3600, "api_max_body_bytes": 4096}
    )


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """``/ok`` answers at once, ``/slow/N`` after N seconds, anything else 404."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(float(self.path.rsplit("/", 1)[1]))
        status = 404 if self.path == "/missing" else 200
        body = b'{"report": "ok"}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    """A local HTTP server (127.0.0.1 is allow-listed for fetch_external_data in tests)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def _until(api: Api, job_id: str, statuses: set[str], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await api.acall("GET", f"/jobs/{job_id}")).json
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


@pytest.mark.anyio
async def test_long_poll_returns_when_the_job_finishes_and_result_outlives_5_minutes(
    api: Api, container: LambdaContainer, worker: Any, origin: str, settings: Settings
) -> None:
    created = await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": f"{origin}/slow/1"})
    assert created.status == 202
    job_id = created.json["id"]
    started = time.monotonic()
    done = await api.acall("GET", f"/jobs/{job_id}", query={"wait": "15"})
    assert time.monotonic() - started < 10  # returned on completion, not at the deadline
    assert done.json["status"] == "done", done.text
    assert done.json["tries"] == 1
    assert done.json["result"]
    assert done.json["started_at"] <= done.json["finished_at"]
    # the result is kept for the configured retention, not Streaq's 5 minutes
    ttl = await container.aqueue(lambda q: q.redis.ttl(q.streaq.results_key + job_id))
    assert 300 < ttl <= settings.result_retention_seconds


@pytest.mark.anyio
async def test_abort_a_running_job(api: Api, worker: Any, origin: str) -> None:
    job_id = (await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": f"{origin}/slow/8"})).json["id"]
    await _until(api, job_id, {"running"})
    aborted = await api.acall("DELETE", f"/jobs/{job_id}")
    assert aborted.status == 200
    job = await _until(api, job_id, {"aborted"}, timeout=5)
    assert job["finished_at"]
    assert_error(await api.acall("DELETE", f"/jobs/{job_id}"), 409, "conflict")


@pytest.mark.anyio
async def test_a_job_that_fails_for_good_reports_its_error_and_is_a_dead_letter(
    api: Api, worker: Any, origin: str
) -> None:
    job_id = (await api.acall("POST", "/jobs/fetch_external_data",
                              body={"url": f"{origin}/missing"})).json["id"]
    failed = (await api.acall("GET", f"/jobs/{job_id}", query={"wait": "10"})).json
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "PermanentJobError"
    assert "404" in failed["error"]["message"]
    letters = (await api.acall("GET", "/dead-letters")).json["items"]
    assert [letter["id"] for letter in letters] == [job_id]
    retried = await api.acall("POST", f"/jobs/{job_id}/retry")
    assert retried.status == 202
    assert (await _until(api, retried.json["id"], {"failed"}))["name"] == "fetch_external_data"


# --- per-owner quotas ------------------------------------------------------------------------


def test_over_the_enqueue_rate_a_caller_gets_429_with_retry_after_and_ratelimit_headers(
        settings: Settings) -> None:
    tight = settings.model_copy(update={"limit_enqueue_per_second": 0.5,
                                        "limit_enqueue_burst": 2})
    box = LambdaContainer(tight)
    try:
        api = Api(box)
        accepted = [api("POST", "/jobs/generate_sales_report", body=REPORT) for _ in range(2)]
        refused = api("POST", "/jobs/generate_sales_report", body=REPORT)
        other = api("POST", "/jobs/generate_sales_report", body=REPORT, sub="someone-else")
        upload = api("POST", "/uploads",
                     body={"filename": "a.png", "content_type": "image/png", "size": 10})
    finally:
        box.close()
    assert [r.status for r in accepted] == [202, 202]
    error = assert_error(refused, 429, "rate_limited")
    assert "at most 0.5 per second" in error["message"]
    assert error["details"] == {"limit": "enqueue", "retry_after_seconds": 2}
    assert refused.headers["Retry-After"] == "2"
    assert refused.headers["RateLimit-Policy"] == '"enqueue";q=2;w=4'
    assert refused.headers["RateLimit"] == '"enqueue";r=0;t=2'
    assert other.status == 202  # one caller's quota is theirs alone
    assert_error(upload, 429, "rate_limited")  # an upload is an enqueue too


def test_too_many_long_polls_at_once_get_429(settings: Settings) -> None:
    tight = settings.model_copy(update={"limit_long_polls": 1})
    box = LambdaContainer(tight)
    try:
        api = Api(box)
        job_id = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
        held = box.queue(lambda q: q.lease_long_poll(SUB, 20))  # another instance's long-poll
        refused = api("GET", f"/jobs/{job_id}", query={"wait": "1"})
        plain = api("GET", f"/jobs/{job_id}")  # without ?wait= there is no limit
        box.queue(lambda q: q.release_long_poll(SUB, held))
        waited = api("GET", f"/jobs/{job_id}", query={"wait": "1"})
    finally:
        box.close()
    error = assert_error(refused, 429, "rate_limited")
    assert error["details"]["limit"] == "long-polls"
    assert refused.headers["RateLimit-Policy"] == '"long-polls";q=1;w=1'
    assert plain.status == 200
    assert waited.status == 200


# --- replay ---------------------------------------------------------------------------------


def test_a_replay_links_to_the_job_it_replays_and_shows_its_own_input(api: Api) -> None:
    original = api("POST", "/jobs/generate_sales_report", body=REPORT).json["id"]
    edited = {**REPORT, "end_date": "2026-11-28"}
    replay = api("POST", "/jobs/generate_sales_report", body=edited,
                 query={"replay_of": original})
    assert replay.status == 202, replay.text
    read = api("GET", f"/jobs/{replay.json['id']}").json
    assert read["replay_of"] == original
    assert read["input"] == {**edited, "currency": None}
    assert api("GET", f"/jobs/{original}").json["replay_of"] is None
    # Only one of your own jobs can be replayed.
    theirs = api("POST", "/jobs/generate_sales_report", body=REPORT, sub="someone-else").json["id"]
    refused = api("POST", "/jobs/generate_sales_report", body=edited, query={"replay_of": theirs})
    assert_error(refused, 404, "not_found")


def test_a_callers_flood_is_enqueued_at_the_lowest_priority_after_the_threshold(
        settings: Settings) -> None:
    demoting = settings.model_copy(update={"fair_share_demote_after": 2})
    box = LambdaContainer(demoting)
    try:
        api = Api(box)
        flood = [api("POST", "/jobs/generate_sales_report", body=REPORT,
                     query={"priority": "high"}) for _ in range(4)]
        other = api("POST", "/jobs/generate_sales_report", body=REPORT, sub="someone-else",
                    query={"priority": "high"})
        waiting = box.queue(lambda q: q.queued_by_priority())
    finally:
        box.close()
    assert [r.status for r in flood] == [202] * 4 and other.status == 202
    # THEN the caller's first two kept their priority, the rest wait behind everyone's
    # work; another caller is not affected
    assert waiting == {"low": 2, "normal": 0, "high": 3}
