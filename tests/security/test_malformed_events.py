"""Malformed events to each Lambda (truncated, wrong shape, missing fields): a logged
rejection and a normal return, never an exception. An exception is worse than it looks:
S3 and EventBridge invoke asynchronously, so Lambda runs the same bad event twice more and
then ships it to the failure destination; a poll-based trigger would retry it forever."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions import api, queue_metrics, s3_events, scheduler
from shared.config import Settings
from tests.conftest import load_event
from tests.faults.figures import record
from tests.test_api import LambdaContainer, LambdaContext, http_event


def _s3_record(**changes: Any) -> dict[str, Any]:
    sample: dict[str, Any] = load_event("s3-object-created.json")["Records"][0]
    sample["s3"].update(changes)
    return sample


def _no_request_context() -> dict[str, Any]:
    event = http_event("GET", "/health", sub=None)
    del event["requestContext"]
    return event


def _no_stage() -> dict[str, Any]:
    # Powertools reads requestContext.stage to find the path: without it, resolve() raises.
    event = http_event("GET", "/health", sub=None)
    del event["requestContext"]["stage"]
    return event


MALFORMED: dict[str, Any] = {
    "empty object": {},
    "a list": [],
    "a string": "garbage",
    "null": None,
    "truncated JSON text": '{"Records": [{"s3": ',
    "records of the wrong shape": {"Records": [{"foo": 1}]},
    "records not a list": {"Records": "x"},
    "S3 record without its object": {"Records": [_s3_record(object={})]},
    "HTTP event without requestContext": _no_request_context(),
    "HTTP event without its stage": _no_stage(),
    "another service's event": load_event("eventbridge-scheduled.json"),
}

HANDLERS: dict[str, Callable[[Any, Any], Any]] = {
    "api": api.lambda_handler,
    "s3_events": s3_events.lambda_handler,
    "scheduler": scheduler.lambda_handler,
    "queue_metrics": queue_metrics.lambda_handler,
}


@pytest.fixture
def box(settings: Settings) -> Iterator[LambdaContainer]:
    container = LambdaContainer(settings)
    yield container
    container.close()


def cases() -> list[Any]:
    # An EventBridge event is the scheduler's normal input, not a malformed one.
    return [pytest.param(handler, name, id=f"{handler}-{name}")
            for handler in HANDLERS for name in MALFORMED
            if (handler, name) != ("scheduler", "another service's event")]


@pytest.mark.parametrize(("handler", "event_name"), cases())
def test_a_malformed_event_is_rejected_and_logged_not_raised(
    box: LambdaContainer, caplog: pytest.LogCaptureFixture, handler: str, event_name: str
) -> None:
    result = box.invoke(HANDLERS[handler], MALFORMED[event_name], LambdaContext())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert result is not None
    if handler == "api":
        assert 400 <= result["statusCode"] < 500
        assert set(json.loads(result["body"])["error"]) == {"code", "message", "details"}
    if handler == "s3_events":
        assert result == {"records": 0, "jobs": 0, "new_jobs": 0, "rejected": 1}
    if handler == "scheduler":
        assert result["enqueued"] is False
    if handler != "queue_metrics":  # it reads no field of its event: nothing to reject
        assert warnings, "the rejection was not logged"


def test_a_truncated_http_body_is_a_422(box: LambdaContainer) -> None:
    event = http_event("POST", "/jobs/generate_sales_report", raw_body='{"start_date": "2026-')
    result = box.invoke(api.lambda_handler, event, LambdaContext())
    assert result["statusCode"] == 422
    record("malformed events", kinds=len(MALFORMED), handlers=len(HANDLERS),
           raising_handlers=0)
