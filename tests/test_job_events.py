"""Job events: EventBridge's shape, published by the worker and the API, never the payload."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from shared.aws import _client, events_client
from shared.config import Settings
from shared.job_events import DETAIL_TYPE, SOURCE, EventBridgeSink, detail
from shared.queue import JobQueue

REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


def read_events(path: Path, wanted: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            events = [json.loads(line) for line in path.read_text().splitlines()]
            if len(events) >= wanted:
                return events
        time.sleep(0.05)
    return events


def test_eventbridge_delivers_the_events_to_a_rule_on_the_bus(settings: Settings) -> None:
    # GIVEN a bus whose rule sends Offload's job events to a queue (moto's server)
    bus = f"offload-jobs-{uuid.uuid4().hex[:6]}"
    events = events_client(settings)
    sqs = _client("sqs", settings)
    events.create_event_bus(Name=bus)
    queue_url = sqs.create_queue(QueueName=bus)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name="jobs", EventBusName=bus,
                    EventPattern=json.dumps({"source": [SOURCE], "detail-type": [DETAIL_TYPE]}))
    events.put_targets(Rule="jobs", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    # WHEN twelve events are published (two PutEvents calls)
    sink = EventBridgeSink(events, bus)
    sent = [detail(f"job-{i}", "generate_sales_report", "ada", "queued") for i in range(12)]
    sink.publish(sent)
    # THEN each arrives with the source, detail-type and detail
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(got) < 12 and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
    assert sorted(e["detail"]["job_id"] for e in got) == sorted(d["job_id"] for d in sent)
    assert {(e["source"], e["detail-type"]) for e in got} == {(SOURCE, DETAIL_TYPE)}


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


@pytest.fixture
def settings(settings: Settings, events_file: Path) -> Settings:
    return settings.model_copy(update={"job_events_file": str(events_file)})


@pytest.mark.anyio
async def test_a_job_tells_when_it_starts_progresses_and_succeeds(
        worker: Any, queue: JobQueue, events_file: Path) -> None:
    job = await queue.enqueue("generate_sales_report", REPORT, owner="ada")
    view = await queue.wait(job.id, "ada", timeout=30)
    assert view.status == "done"
    events = [e for e in read_events(events_file, 3) if e["detail"]["job_id"] == job.id]
    states = [e["detail"]["state"] for e in events]
    assert states[0] == "started"
    assert states[-1] == "succeeded"
    assert "progress" in states
    for event in events:
        assert event["detail"]["owner"] == "ada"
        assert "input" not in event["detail"] and "result" not in event["detail"]
        assert REPORT["start_date"] not in json.dumps(event)


@pytest.mark.anyio
async def test_a_job_that_fails_for_good_says_why(worker: Any, queue: JobQueue,
                                                  events_file: Path) -> None:
    owner = f"u-{uuid.uuid4().hex}"
    job = await queue.enqueue("send_welcome_email", {}, owner=owner)
    assert (await queue.wait(job.id, owner, timeout=30)).status == "failed"
    events = [e["detail"] for e in read_events(events_file, 2) if e["detail"]["job_id"] == job.id]
    assert [e["state"] for e in events] == ["started", "failed"]
    assert events[-1]["error"]["type"] == "PermanentJobError"


def test_the_api_tells_when_a_job_is_queued_and_aborted(settings: Settings,
                                                        events_file: Path) -> None:
    from tests.test_api import Api, LambdaContainer

    box = LambdaContainer(settings)
    try:
        api = Api(box)
        job_id = api("POST", "/jobs/generate_sales_report", body=REPORT,
                     query={"delay_seconds": "3600"}).json["id"]
        assert api("DELETE", f"/jobs/{job_id}").status == 200
    finally:
        box.close()
    mine = [e["detail"] for e in read_events(events_file, 2) if e["detail"]["job_id"] == job_id]
    assert [d["state"] for d in mine] == ["queued", "aborted"]


@pytest.mark.anyio
async def test_queued_is_timed_before_the_worker_can_start_the_job(
        settings: Settings, events_file: Path, worker: Any) -> None:
    from tests.test_api import Api, LambdaContainer

    # GIVEN a running worker, so the job may start before the API publishes "queued"
    box = LambdaContainer(settings)
    try:
        job_id = Api(box)("POST", "/jobs/send_welcome_email", body={}).json["id"]
        # WHEN both events are in
        got = [e["detail"] for e in await anyio.to_thread.run_sync(read_events, events_file, 3)
               if e["detail"]["job_id"] == job_id]
    finally:
        box.close()
    # THEN ordered by their time, "queued" comes first whatever order they arrived in
    times = {d["state"]: d["time"] for d in got}
    assert {"queued", "started"} <= times.keys(), got
    assert times["queued"] < times["started"]


def test_the_template_has_the_bus_and_lets_only_the_api_and_workers_put_on_it() -> None:
    from tests.test_template import load

    template, worker = load("template.yaml"), load("infra/worker.yaml")
    assert template["Resources"]["JobEventsBus"]["Type"] == "AWS::Events::EventBus"
    api = template["Resources"]["ApiFunction"]["Properties"]
    assert api["Environment"]["Variables"]["OFFLOAD_JOB_EVENTS_BUS"] == {"Ref": "JobEventsBus"}
    [grant] = [s for p in api["Policies"] for s in p["Statement"]
               if s.get("Sid") == "PublishJobEvents"]
    assert grant["Resource"] == {"Fn::GetAtt": ["JobEventsBus", "Arn"]}
    container = worker["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert {"Name": "OFFLOAD_JOB_EVENTS_BUS", "Value": {"Ref": "JobEventsBusName"}} in \
        container["Environment"]
