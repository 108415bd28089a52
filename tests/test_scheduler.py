"""functions/scheduler through ``lambda_handler``: a schedule's input (as the whole event, or
as the detail of an EventBridge event built from the shared sample) enqueues its job once;
an unknown job or bad arguments are logged, counted and not enqueued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions import scheduler
from infra.local.private_redis import free_port
from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.queue import deterministic_job_id
from tests.conftest import load_event
from tests.test_api import LambdaContainer, LambdaContext


@pytest.fixture
def container(settings: Settings) -> Iterator[LambdaContainer]:
    box = LambdaContainer(settings)
    yield box
    box.close()


def scheduled_event(detail: dict[str, Any]) -> dict[str, Any]:
    event = load_event("eventbridge-scheduled.json")
    event["detail"] = detail
    return event


def invoke(box: LambdaContainer, event: Any, context: LambdaContext | None = None) -> Any:
    return box.invoke(scheduler.lambda_handler, event, context or LambdaContext())


def meta(box: LambdaContainer, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = box.queue(lambda q: q.owned_meta(job_id, scheduler.OWNER))
    return {**found, "payload": json.loads(found["payload"])}


def test_schedule_input_enqueues_its_job(container: LambdaContainer) -> None:
    # GIVEN the input a SAM Schedule event passes as the whole event
    event = {"job": "cleanup_expired_sessions", "args": {"older_than_hours": 48}}
    # WHEN the rule fires
    result = invoke(container, event)
    # THEN the job is enqueued with those arguments, owned by the system
    assert result["enqueued"] is True
    assert result["new_job"] is True
    job = meta(container, result["job_id"])
    assert job["name"] == "cleanup_expired_sessions"
    assert job["payload"] == {"older_than_hours": 48}


def test_a_retried_invocation_does_not_enqueue_twice(container: LambdaContainer) -> None:
    # Lambda's async retry of the same invocation keeps its request id.
    context = LambdaContext()
    first = invoke(container, {"job": "send_daily_digest"}, context)
    again = invoke(container, {"job": "send_daily_digest"}, context)
    assert first["job_id"] == again["job_id"]
    assert (first["new_job"], again["new_job"]) == (True, False)
    assert container.queue(lambda q: q.stats()).queued == 1


def test_eventbridge_event_with_the_job_as_detail(container: LambdaContainer) -> None:
    event = scheduled_event({"job": "sweep_pending_blobs", "args": {}})
    result = invoke(container, event)
    assert result["enqueued"] is True
    # one job per event id: a duplicate delivery of the same event is the same job
    assert result["job_id"] == deterministic_job_id("schedule", "sweep_pending_blobs",
                                                    event["id"])
    assert invoke(container, event)["new_job"] is False
    assert meta(container, result["job_id"])["correlation_id"] == event["id"]


def test_sam_cli_scheduled_event_sample_without_version_is_accepted(
    container: LambdaContainer,
) -> None:
    # GIVEN `sam local generate-event cloudwatch scheduled-event` (no "version" field) whose
    # detail names a job
    event = load_event("sam-cli-scheduled-event.json")
    assert "version" not in event
    event["detail"] = {"job": "send_daily_digest"}
    # WHEN it is delivered
    result = invoke(container, event)
    # THEN the job is enqueued under the event's id
    assert result["enqueued"] is True, result
    assert result["job_id"] == deterministic_job_id("schedule", "send_daily_digest",
                                                    event["id"])


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (load_event("eventbridge-scheduled.json"), "invalid_event"),  # detail is {}
        ({"args": {}}, "invalid_event"),
        ({"job": "send_daily_digest", "args": [1, 2]}, "invalid_event"),
        ({"job": "send_daily_digest", "extra": True}, "invalid_event"),
        ({"job": "no_such_job"}, "unknown_job"),
        ({"job": "cleanup_expired_sessions", "args": {"older_than_hours": 0}},
         "invalid_arguments"),
        ({"job": "send_daily_digest", "args": {"unexpected": 1}}, "invalid_arguments"),
        (scheduled_event({"job": "generate_sales_report", "args": {"start_date": "x"}}),
         "invalid_arguments"),
    ],
)
def test_bad_schedules_are_logged_counted_and_not_enqueued(
    container: LambdaContainer, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, event: Any, reason: str,
) -> None:
    result = invoke(container, event)
    assert result == {"enqueued": False, "reason": reason, "error": result["error"]}
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [getattr(r, "reason", None) for r in errors] == [reason]
    out = capsys.readouterr().out.splitlines()
    metrics = [json.loads(line) for line in out if line.startswith('{"_aws"')]
    assert [m["reason"] for m in metrics if "ScheduleRejected" in m] == [reason]
    stats = container.queue(lambda q: q.stats())
    assert (stats.queued, stats.scheduled, stats.due_scheduled) == (0, 0, 0)


def test_redis_down_fails_the_invocation_so_lambda_retries(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    box = LambdaContainer(dead)
    try:
        with pytest.raises(QueueUnavailable):
            invoke(box, {"job": "send_daily_digest"})
    finally:
        box.close()
