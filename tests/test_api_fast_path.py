"""``POST /jobs/{name}`` without the router answers exactly what the router answers.

``functions.api`` calls ``create_job`` directly when ``jobs.plain_create_job`` shows a
request valid, and leaves everything else to Powertools. Each case here runs twice, in
its own queue each time, through ``lambda_handler``: once as deployed, once with the
plain path switched off (every request through ``APIGatewayHttpResolver``), with the same
job ids; the two proxy answers (status, headers, cookies, body bytes) must be equal.
The cases cover valid requests of every HTTP job, every kind of invalid one, identity,
idempotency replays and conflicts, bodies that are not JSON objects, unusual event shapes,
a Redis that is down and a route that fails; hypothesis adds generated ones. Each
explicit case also says which path it must take, so the comparison is not vacuous.
"""

from __future__ import annotations

import base64
import copy
import io
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import functions.api
import shared.queue.client
from functions import _runtime as runtime
from functions.routes import jobs
from infra.local.private_redis import free_port
from shared.config import Settings
from tests.test_api import SUB, LambdaContainer, LambdaContext, http_event

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}
WELCOME = {"user_id": "0123456789abcdef01234567"}
ORDER = {"user_id": "0123456789abcdef01234567", "amount_cents": 1250, "currency": "EUR",
         "reference": "order-1"}
KEY = "key-0123456789"
JOBS = "/jobs/generate_sales_report"

Event = dict[str, Any]


@dataclass
class Request:
    """One invocation; ``plain`` says whether the plain path must take it (None: either)."""

    event: Event
    plain: bool | None = None


def post(path: str = JOBS, *, plain: bool | None = None, body: Any = REPORT,
         **kwargs: Any) -> Request:
    return Request(http_event("POST", path, body=body, **kwargs), plain)


def edited(request: Request, edit: Callable[[Event], None],
           plain: bool | None = None) -> Request:
    event = copy.deepcopy(request.event)
    edit(event)
    return Request(event, plain)


# --- the two paths -------------------------------------------------------------------------


@dataclass
class JobIds:
    """A stand-in for ``uuid`` in shared.queue.client: the same ids, in the same order, per run."""

    counter: Iterator[int] = field(default_factory=itertools.count)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=next(self.counter) + 1, version=4)

    def __getattr__(self, name: str) -> Any:
        return getattr(uuid, name)


class Paths:
    """Runs a sequence of requests as deployed and through the router only."""

    def __init__(self, box: LambdaContainer, settings: Settings,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.box = box
        self.settings = settings
        self.monkeypatch = monkeypatch
        self.runs = itertools.count()
        self.taken = False
        real = jobs.plain_create_job

        def spy(event: Event) -> dict[str, Any] | None:
            arguments = real(event)
            self.taken = arguments is not None
            return arguments

        self.plain: Callable[[Event], dict[str, Any] | None] = spy
        self.router_only: Callable[[Event], dict[str, Any] | None] = lambda event: None

    def run(self, requests: list[Request], *, plain: bool,
            settings: Settings | None = None) -> list[tuple[Any, bool]]:
        """Each request's answer (or what the invocation raised), and whether the plain
        path took it."""
        base = settings or self.settings
        queue = f"{base.queue_name}-{next(self.runs)}"
        self.box.invoke(runtime.configure, base.model_copy(update={"queue_name": queue}))
        self.monkeypatch.setattr(shared.queue.client, "uuid", JobIds())
        self.monkeypatch.setattr(jobs, "plain_create_job",
                                 self.plain if plain else self.router_only)
        answers = []
        for request in requests:
            self.taken = False
            answer: Any
            try:
                answer = self.box.invoke(functions.api.lambda_handler,
                                         copy.deepcopy(request.event), LambdaContext())
            except Exception as error:  # a header that is not a string crashes Powertools
                answer = (type(error), str(error))
            answers.append((answer, self.taken))
        return answers

    def compare(self, requests: list[Request], settings: Settings | None = None) -> list[bool]:
        """Assert both paths answer each request alike; which ones the plain path took."""
        deployed = self.run(requests, plain=True, settings=settings)
        routed = self.run(requests, plain=False, settings=settings)
        for request, (ours, was_plain), (theirs, _) in zip(requests, deployed, routed,
                                                            strict=True):
            assert ours == theirs, request.event
            if request.plain is not None:
                assert was_plain == request.plain, (ours, request.event)
        return [was_plain for _, was_plain in deployed]


@pytest.fixture
def paths(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Paths]:
    box = LambdaContainer(settings)
    yield Paths(box, settings, monkeypatch)
    box.close()


# --- explicit cases ------------------------------------------------------------------------


def _query(**query: str) -> dict[str, Any]:
    return {"query": query}


VALID = [
    post(plain=True),
    post("/jobs/send_welcome_email", body=WELCOME, plain=True),
    post("/jobs/place_order", body=ORDER, plain=True),  # a pipeline
    post("/jobs/fetch_external_data", body={"url": "https://example.com/data.json"},
         plain=True),
    post(body={**REPORT, "currency": "USD"}, plain=True),
    post(headers={"content-type": "application/json; charset=utf-8"}, plain=True),
    post(headers={"accept-encoding": "gzip, deflate"}, plain=True),
    post(headers={"idempotency-key": "~" * 255}, plain=True),
    post(plain=True, **_query(delay_seconds="0")),
    post(plain=True, **_query(delay_seconds="60", priority="high")),
    post(plain=True, **_query(delay_seconds=str(jobs.MAX_DELAY_SECONDS))),
    post(plain=True, **_query(run_at="2030-01-01T00:00:00Z")),
    post(plain=True, **_query(run_at="2030-01-01T02:00:00+02:00", priority="low")),
    post(plain=True, **_query(run_at="1893456000")),
    post(plain=True, **_query(priority="normal", unrelated="x,y")),
    post(raw_body='{"start_date": "2026-11-01", "end_date": "2026-11-27", '
                  '"start_date": "2026-11-02"}', plain=True),  # the last duplicate wins
]

# Refused by Powertools before the route runs (or shapes the plain path leaves to it).
ROUTED = [
    post(body=None, plain=False),
    post(raw_body="", plain=False),
    post(raw_body="null", plain=False),
    post(raw_body="[]", plain=False),
    post(raw_body="1", plain=False),
    post(raw_body='"a string"', plain=False),
    post(raw_body="{not json", plain=False),
    post(raw_body="[" * 100_000 + "]" * 100_000, plain=False),
    post(headers={"content-type": "Application/JSON"}, plain=False),
    post(headers={"idempotency-key": ""}, plain=False),
    post(headers={"idempotency-key": " "}, plain=False),
    post(headers={"idempotency-key": "a b"}, plain=False),
    post(headers={"idempotency-key": "k" * 256}, plain=False),
    post(headers={"idempotency-key": "a,b"}, plain=False),
    post(headers={"idempotency-key": "caf\u00e9"}, plain=False),
    post(headers={"idempotency-key": "abc\n"}, plain=False),
    post(plain=False, **_query(delay_seconds="-1")),
    post(plain=False, **_query(delay_seconds=str(jobs.MAX_DELAY_SECONDS + 1))),
    post(plain=False, **_query(delay_seconds="abc")),
    post(plain=False, **_query(delay_seconds=" 5")),
    post(plain=False, **_query(delay_seconds="05")),
    post(plain=False, **_query(delay_seconds="1e3")),
    post(plain=False, **_query(delay_seconds="5,6")),
    post(plain=False, **_query(delay_seconds="")),
    post(plain=False, **_query(run_at="2030-01-01T00:00:00")),  # naive
    post(plain=False, **_query(run_at="tomorrow")),
    post(plain=False, **_query(run_at="")),
    post(plain=False, **_query(run_at="2030-01-01T00:00:00Z,2031-01-01T00:00:00Z")),
    post(plain=False, **_query(priority="p" * 33)),
    post(plain=False, **_query(priority="high,low")),
    post("/jobs/" + "a" * 65, plain=False),
    post("/jobs/Generate_Sales_Report", plain=False),
    post("/jobs/generate-sales-report", plain=False),
    post("/jobs/generate%20report", plain=False),
    post("/jobs/generate_sales_report/", plain=False),
    post("/jobs/", plain=False),
    post(sub=None, plain=False),
    post(sub="", plain=False),
    post(sub="a/b", plain=False),
    post(sub=" " + SUB, plain=False),
]

# Valid for Powertools' validation, refused by the route itself (the plain path runs it).
ROUTE_ERRORS = [
    post("/jobs/no_such_job", body={}, plain=True),
    post("/jobs/" + "a" * 64, body={}, plain=True),
    post("/jobs/send_password_reset", body={"user_id": "0123456789abcdef01234567",
                                             "token": "t" * 20}, plain=True),
    post(body={"start_date": "not a date", "colour": "red"}, plain=True),
    post(body={"start_date": "2026-11-27", "end_date": "2026-11-01"}, plain=True),
    post(body={}, plain=True),
    post(raw_body='{"start_date": NaN}', plain=True),
    post("/jobs/fetch_external_data", body={"url": "http://127.0.0.1:1/x"}, plain=True),
    post(plain=True, **_query(delay_seconds="5", run_at="2030-01-01T00:00:00Z")),
    post(plain=True, **_query(priority="urgent")),
    post(plain=True, **_query(priority="")),
    post(plain=True, **_query(run_at="2001-01-01T00:00:00Z")),  # in the past: runs now
]

# Answered before routing (body checks) by both.
REFUSED_EARLY = [
    post(raw_body="x" * 300_000),
    post(raw_body="a=b", headers={"content-type": "text/plain"}),
    post(raw_body="{}", headers={"content-type": "application/json-patch+json"}),
]


def _edit(fn: Callable[[Event], None], plain: bool | None = False) -> Request:
    return edited(post(), fn, plain)


def _set_context(key: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event["requestContext"].__setitem__(key, value)


def _set(key: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event.__setitem__(key, value)


def _base64_body(event: Event) -> None:
    event.update(body=base64.b64encode(event["body"].encode()).decode(), isBase64Encoded=True)


def _header(name: str, value: Any) -> Callable[[Event], None]:
    return lambda event: event["headers"].__setitem__(name, value)


def _claims(value: Any) -> Callable[[Event], None]:
    return lambda event: event["requestContext"]["authorizer"]["jwt"].__setitem__("claims", value)


def _method(method: str) -> Callable[[Event], None]:
    return lambda event: event["requestContext"]["http"].__setitem__("method", method)


def _staged(event: Event) -> None:
    event["requestContext"]["stage"] = "prod"
    event["rawPath"] = "/prod" + event["rawPath"]


SHAPES = [
    _edit(_base64_body),
    _edit(_header("Idempotency-Key", KEY)),  # API Gateway lowercases; a test event might not
    _edit(_header("x-empty", None)),
    _edit(_set("headers", None), plain=None),
    _edit(_set("cookies", ["session=abc", "theme=dark"]), plain=True),
    _edit(_set("cookies", ["session"]), plain=True),
    _edit(_set("cookies", [1, 2])),
    _edit(_set("queryStringParameters", None), plain=True),
    _edit(_set("queryStringParameters", {"delay_seconds": 5})),
    _edit(_set("queryStringParameters", {"unrelated": None})),
    _edit(_method("post")),
    _edit(_method("GET")),
    _edit(_method("PUT")),
    _edit(_staged),
    _edit(_set_context("stage", "prod")),
    _edit(_set_context("authorizer", None)),
    _edit(_set_context("authorizer", {"jwt": None})),
    _edit(_set_context("authorizer", {"lambda": {"sub": SUB}})),
    _edit(_claims(None)),
    _edit(_claims({"sub": 123})),
    _edit(_claims({"sub": ["a"]})),
    _edit(_claims({})),
]


@pytest.mark.parametrize(
    "cases",
    [VALID, ROUTED, ROUTE_ERRORS, REFUSED_EARLY, SHAPES],
    ids=["valid", "refused-by-validation", "refused-by-the-route", "refused-early", "shapes"],
)
def test_each_request_answers_the_same_both_ways(paths: Paths, cases: list[Request]) -> None:
    paths.compare(cases)


def test_idempotency_replays_and_conflicts_answer_the_same_both_ways(paths: Paths) -> None:
    keyed = post(headers={"idempotency-key": KEY}, plain=True)
    paths.compare([
        keyed,
        keyed,  # replay: the same job
        post(body={**REPORT, "end_date": "2026-11-28"}, headers={"idempotency-key": KEY},
             plain=True),  # same key, other payload: 409
        post("/jobs/send_welcome_email", body=WELCOME, headers={"idempotency-key": KEY},
             plain=True),  # same key, other job: 409
        post(headers={"idempotency-key": KEY}, sub="another-caller", plain=True),  # new job
        post(headers={"idempotency-key": KEY}, plain=False, **_query(delay_seconds="x")),
        post(plain=True),
        post(plain=True),  # no key: a second job
    ])


def test_a_redis_that_is_down_answers_the_same_both_ways(paths: Paths) -> None:
    down = paths.settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}"})
    paths.compare([post(plain=True), post(headers={"idempotency-key": KEY}, plain=True)],
                  settings=down)


def test_a_failing_route_answers_the_same_both_ways(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(work: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime, "run", broken)
    paths.compare([post(plain=True)])


def test_the_sample_event_takes_the_plain_path(paths: Paths) -> None:
    from tests.conftest import load_event

    paths.compare([Request(load_event("apigw-http-v2-post-job.json"), plain=True)])


def test_the_openapi_document_still_describes_the_route() -> None:
    document = json.loads(functions.api.app.get_openapi_json_schema(
        title=functions.api.TITLE, version=functions.api.VERSION))
    operation = document["paths"]["/jobs/{name}"]["post"]
    names = {p["name"]: p for p in operation["parameters"]}
    assert set(names) == {"name", "idempotency-key", "delay_seconds", "run_at", "priority"}
    assert names["name"]["schema"]["maxLength"] == jobs.MAX_NAME_LENGTH
    assert set(operation["responses"]) == {"202", "401", "403", "404", "409", "413", "415",
                                           "422", "500", "503"}


# --- generated cases -----------------------------------------------------------------------



_VALID_JOBS = st.sampled_from([("generate_sales_report", REPORT),
                                ("generate_sales_report", {**REPORT, "currency": "EUR"}),
                                ("send_welcome_email", WELCOME), ("place_order", ORDER)])
_VALID_QUERY = st.fixed_dictionaries({}, optional={
    "delay_seconds": st.sampled_from(["0", "1", "60"]),
    "run_at": st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01T00:00:00+01:00"]),
    "priority": st.sampled_from(["low", "normal", "high"]),
})
_JUNK_NAMES = st.one_of(st.sampled_from(["send_password_reset", "no_such_job", "a" * 65]),
                        st.text(alphabet="abcXYZ_-.%019 ", max_size=70))
_JUNK_BODIES = st.one_of(
    st.dictionaries(st.sampled_from(["start_date", "end_date", "currency", "user_id", "x"]),
                    st.one_of(st.text(max_size=12), st.integers(), st.none(),
                              st.sampled_from(["2026-11-01", "2026-11-30", "EUR"])),
                    max_size=4).map(json.dumps),
    st.sampled_from(["", "null", "[]", "{", '{"start_date": NaN}']),
    st.text(max_size=30),
)
_JUNK_QUERY = st.dictionaries(
    st.sampled_from(["delay_seconds", "run_at", "priority"]),
    st.one_of(st.sampled_from(["05", "-1", "", "x", "1,2", "2030-01-01T00:00:00", "2592001",
                               "urgent", "p" * 33]), st.text(max_size=12)),
    min_size=1,
)
_JUNK_KEYS = st.one_of(st.sampled_from(["", "a,b", " x", "k" * 256]), st.text(max_size=10))
_JUNK_SUBS = st.sampled_from(["", "a/b", None])
_JUNK_CONTENT_TYPES = st.sampled_from(["Application/Json", "text/plain", "", None])


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A valid request (about half the time) or one with a few parts replaced by junk."""

    def junk() -> bool:
        return draw(st.integers(0, 9)) == 0

    name, payload = draw(_VALID_JOBS)
    if junk():
        name = draw(_JUNK_NAMES)
    raw_body = draw(_JUNK_BODIES) if junk() else json.dumps(payload)
    query = {**draw(_VALID_QUERY), **(draw(_JUNK_QUERY) if junk() else {})}
    headers = {"content-type": "application/json"}
    key = draw(st.sampled_from([None, KEY, "other-key"]))
    if junk():
        key = draw(_JUNK_KEYS)
    if key is not None:
        headers["idempotency-key"] = key
    content_type = draw(_JUNK_CONTENT_TYPES) if junk() else "application/json"
    sub = draw(_JUNK_SUBS) if junk() else draw(st.sampled_from([SUB, "another-caller"]))
    event = http_event("POST", "/jobs/" + name, raw_body=raw_body, query=query or None,
                       headers=headers, sub=sub)
    if content_type is None:
        del event["headers"]["content-type"]
    else:
        event["headers"]["content-type"] = content_type
    return Request(event)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=4))
def test_generated_requests_answer_the_same_both_ways(paths: Paths,
                                                      batch: list[Request]) -> None:
    taken = paths.compare(batch)
    event(f"{sum(taken)} of {len(taken)} by the plain path")


# --- the pieces read without Powertools' helpers -----------------------------------------


@pytest.mark.parametrize("event", [
    {"requestContext": {"requestId": "Zx1AbCdEfGhIjKl="}},
    {"requestContext": {"requestId": 42}},
    {"requestContext": {"requestId": None}},
    {"requestContext": {}},
    {"requestContext": None},
    {"requestContext": ["requestId"]},
    {"requestContext": "requestId"},
    {},
    [],
    "event",
    None,
])
def test_the_correlation_id_is_what_the_powertools_path_selects(event: Any) -> None:
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.utilities import jmespath_utils

    expected = jmespath_utils.query(envelope=correlation_paths.API_GATEWAY_HTTP, data=event)
    assert runtime.request_id(event) == expected


def test_log_lines_carry_the_request_id_as_correlation_id(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the API's log handler writing into a buffer (it holds the stdout of import time)
    out = io.StringIO()
    monkeypatch.setattr(functions.api.logger.registered_handler, "stream", out)
    request = post(plain=True)
    # WHEN the same request runs both ways
    paths.compare([request])
    # THEN both "job enqueued" lines carry the request id, from the same place
    lines = [json.loads(line) for line in out.getvalue().splitlines()
             if '"job enqueued"' in line]
    assert len(lines) == 2  # one per path
    assert {line["correlation_id"] for line in lines} == {
        request.event["requestContext"]["requestId"]}
    assert {line["location"] for line in lines} == {lines[0]["location"]}


def test_with_tracing_on_the_handler_is_traced_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {}

    monkeypatch.setattr(functions.api.tracer, "disabled", False)
    traced = functions.api._traced(lambda_handler)
    assert traced is not lambda_handler
    assert traced.__wrapped__ is lambda_handler  # type: ignore[attr-defined]
    monkeypatch.setattr(functions.api.tracer, "disabled", True)
    assert functions.api._traced(lambda_handler) is lambda_handler
