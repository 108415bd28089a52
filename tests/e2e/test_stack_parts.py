"""The local stack's parts, each on its own and fast: template reading, schedule expressions,
the AWS event shapes, the gateway's routing and response rules, the Lambda container's
error and timeout handling, the Redis checks and the supervisor's stop."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.local.events import (
    HttpRequest,
    http_api_event,
    is_s3_test_event,
    normalise_s3_record,
    schedule_payload,
)
from infra.local.gateway import (
    Gateway,
    GatewayConfig,
    GatewayServer,
    lambda_result_to_reply,
    match_route,
)
from infra.local.lambda_container import Container
from infra.local.redis_local import RedisProblem, check_version, parse_version, probe_url
from infra.local.supervisor import ChildSpec, LogStream, Supervisor, marked_pids
from infra.local.template import RouteDef, load_template
from shared.schedules import ScheduleExpressionError, parse_schedule
from tests.conftest import load_event

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- template.yaml ------------------------------------------------------------------------


def test_the_template_yields_handlers_routes_trigger_and_schedules() -> None:
    template = load_template(REPO_ROOT / "template.yaml")

    handlers = {fn.handler for fn in template.functions.values()}
    assert {"functions.api.lambda_handler", "functions.s3_events.lambda_handler",
            "functions.scheduler.lambda_handler",
            "functions.queue_metrics.lambda_handler"} <= handlers
    routes = {r.route_key: r.auth for r in template.routes}
    assert routes["GET /health"] is False  # Authorizer: NONE
    assert routes["ANY /{proxy+}"] is True  # the API's DefaultAuthorizer
    (trigger,) = template.s3_triggers
    assert {"Name": "prefix", "Value": "uploads/"} in trigger.filter_rules
    names = {s.name for s in template.schedules}
    assert {"send_daily_digest", "cleanup_expired_sessions", "sweep_pending_blobs"} <= names
    digest = template.schedule("send_daily_digest")
    assert digest.input == {"job": "send_daily_digest", "args": {}}
    parse_schedule(digest.expression)  # every declared expression is one we evaluate
    for schedule in template.schedules:
        parse_schedule(schedule.expression, schedule.timezone)


def test_events_rules_and_short_tags_are_read(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("""
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: functions.scheduler.lambda_handler
      Environment: {Variables: {LITERAL: "1", RESOLVED: !Ref Stage}}
  Nightly:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: cron(0 2 * * ? *)
      Targets:
        - Arn: !GetAtt Fn.Arn
          Id: fn
          Input: !Sub '{"job": "sweep_pending_blobs", "args": {}}'
""")
    template = load_template(path)
    assert template.functions["Fn"].environment == {"LITERAL": "1"}
    (rule,) = template.schedules
    assert (rule.name, rule.function, rule.logical_id) == ("sweep_pending_blobs", "Fn", "Nightly")


# --- schedule expressions -----------------------------------------------------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("rate(1 minute)", "2026-11-28T16:31:00"),
    ("rate(5 minutes)", "2026-11-28T16:35:00"),
    ("cron(0 6 * * ? *)", "2026-11-29T06:00:00"),
    ("cron(30 * * * ? *)", "2026-11-28T17:30:00"),
    ("cron(15 10 ? * 2-6 *)", "2026-11-30T10:15:00"),  # 2026-11-28 is a Saturday; MON-FRI
    ("cron(0 3 ? * 1 *)", "2026-11-29T03:00:00"),  # EventBridge's 1 is Sunday
])
def test_next_fire_times(expression: str, expected: str) -> None:
    now = datetime(2026, 11, 28, 16, 30, tzinfo=UTC)
    fire = parse_schedule(expression).next_after(now, origin=now)
    assert fire == datetime.fromisoformat(expected).replace(tzinfo=UTC)


@pytest.mark.parametrize("expression", [
    "rate(1 minutes)", "rate(0 hours)", "cron(0 6 * * * *)", "cron(0 6 * *)",
    "cron(0 6 ? * 2#1 *)", "every day",
])
def test_bad_or_unsupported_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse_schedule(expression)


# --- event shapes -------------------------------------------------------------------------


def test_http_event_has_the_payload_2_shape_with_claims() -> None:
    sample = load_event("apigw-http-v2-post-job.json")
    request = HttpRequest("POST", "/jobs/generate_sales_report", "wait=5&x=1&x=2",
                          [("Content-Type", "application/json"), ("Cookie", "a=1; b=2")],
                          b'{"start_date":"2026-11-01"}', "127.0.0.1")
    event = http_api_event(request, "POST /jobs/{name}", {"name": "generate_sales_report"},
                           {"sub": "dev-user"}, "127.0.0.1:8000")

    assert set(sample) <= set(event) | {"queryStringParameters", "cookies"}
    assert set(sample["requestContext"]) <= set(event["requestContext"])
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "dev-user"
    assert event["queryStringParameters"] == {"wait": "5", "x": "1,2"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["body"] == '{"start_date":"2026-11-01"}'
    assert event["isBase64Encoded"] is False


def test_http_event_base64_encodes_binary_bodies() -> None:
    request = HttpRequest("POST", "/x", "", [("content-type", "image/png")], b"\x89PNG\x00",
                          "127.0.0.1")
    event = http_api_event(request, "$default", {}, None, "h")
    assert event["isBase64Encoded"] is True
    assert "authorizer" not in event["requestContext"]


def test_moto_records_are_completed_to_what_s3_sends_and_parse() -> None:
    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import S3Model

    moto_record = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
                   "eventTime": "2026-11-28T16:22:45.462Z", "eventName": "ObjectCreated:Post",
                   "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads",
                          "bucket": {"name": "up", "arn": "arn:aws:s3:::up"},
                          "object": {"key": "uploads%2Fu1%2Fabc%2Fholiday+photo+%281%29.jpg",
                                     "size": 5, "eTag": "5d41402abc4b2a76b9719d911017c592"}}}
    record = normalise_s3_record(moto_record, "eu-west-1")

    assert record["s3"]["object"]["key"] == "uploads/u1/abc/holiday+photo+%281%29.jpg"
    assert set(load_event("s3-object-created.json")["Records"][0]) <= set(record)
    parsed = parse({"Records": [record]}, model=S3Model)
    obj = parsed.Records[0].s3.object
    assert obj is not None
    assert obj.size == 5
    assert is_s3_test_event({"Service": "Amazon S3", "Event": "s3:TestEvent"})


def test_scheduled_events_match_eventbridge_or_deliver_the_input() -> None:
    sample = load_event("eventbridge-scheduled.json")
    event = schedule_payload(None, "offload-daily-digest", "eu-west-1")
    assert set(event) == set(sample)
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"] == sample["resources"]
    assert schedule_payload({"job": "x"}, "r", "eu-west-1") == {"job": "x"}


# --- the gateway --------------------------------------------------------------------------


def test_routes_match_like_api_gateway() -> None:
    health = RouteDef("GET", "/health", "Api", False)
    proxy = RouteDef("ANY", "/{proxy+}", "Api", True)
    gateway = Gateway(GatewayConfig(0, [proxy, health], {"t": {"sub": "s"}}, {}))

    assert gateway.route("GET", "/health") == (health, {})
    assert gateway.route("POST", "/health") == (proxy, {"proxy": "health"})
    assert gateway.route("DELETE", "/jobs/abc") == (proxy, {"proxy": "jobs/abc"})
    assert gateway.route("GET", "/") is None
    assert match_route(RouteDef("POST", "/jobs/{name}", "A", True), "POST", "/jobs/x") == \
        {"name": "x"}
    assert gateway.authorise(proxy, [("Authorization", "Bearer t")]) == {"sub": "s"}
    assert gateway.authorise(proxy, [("Authorization", "Basic t")]) is None
    assert gateway.authorise(proxy, []) is None
    assert gateway.authorise(health, []) == {}


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        ("Content-Length: abc\r\n\r\n", 400),
        ("Content-Length: -5\r\n\r\n", 400),
        ("Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),  # not a hex chunk size
        (f"Content-Length: {11 * 1024 * 1024}\r\n\r\n", 413),
        ("Transfer-Encoding: chunked\r\n\r\nB00000\r\n", 413),  # one 11 MiB chunk
    ],
)
def test_the_gateway_refuses_a_body_it_cannot_or_must_not_read(framing: str, status: int) -> None:
    # GIVEN the gateway serving on a free port
    server = GatewayServer(Gateway(GatewayConfig(0, [], {}, {})))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # WHEN a request arrives whose body framing is broken or over the payload limit
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as conn:
            conn.sendall(f"POST /jobs/x HTTP/1.1\r\nHost: h\r\n{framing}".encode())
            reply = conn.makefile("rb").read().decode()  # the gateway closes after it
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    # THEN it answers with a status and a JSON message, without reading (or waiting for) it
    assert reply.startswith(f"HTTP/1.1 {status} "), reply
    assert '{"message": ' in reply


def test_lambda_results_become_http_responses_by_the_payload_2_rules() -> None:
    plain = lambda_result_to_reply({"ok": True})
    assert (plain.status, json.loads(plain.body)) == (200, {"ok": True})
    full = lambda_result_to_reply({"statusCode": 202, "headers": {"x-a": "1"},
                                   "cookies": ["c=1"], "body": "{}"})
    assert full.status == 202
    assert ("x-a", "1") in full.headers
    assert ("set-cookie", "c=1") in full.headers
    binary = lambda_result_to_reply({"statusCode": 200, "body": "AAE=", "isBase64Encoded": True})
    assert binary.body == b"\x00\x01"


# --- the Lambda container -----------------------------------------------------------------


def test_container_reports_handler_errors_and_timeouts_like_lambda() -> None:
    seen_threads: set[int] = set()

    def handler(event: Any, context: Any) -> Any:
        seen_threads.add(threading.get_ident())
        if event == "boom":
            raise ValueError("bad input")
        if event == "slow":
            time.sleep(1.0)
        return {"echo": event, "left": context.get_remaining_time_in_millis() > 0}

    container = Container("fn", handler, timeout=0.3, memory=128, region="eu-west-1")
    ok = container.invoke("hi")
    failed = container.invoke("boom")
    timed_out = container.invoke("slow")

    assert ok.error is None
    assert ok.result == {"echo": "hi", "left": True}
    assert failed.error is not None
    assert (failed.error["errorType"], failed.error["errorMessage"]) == ("ValueError", "bad input")
    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert len(seen_threads) == 1  # every invocation ran on the one invocation thread


# --- Redis checks -------------------------------------------------------------------------


def test_redis_versions_are_read_and_old_ones_refused_by_name() -> None:
    assert parse_version("Redis server v=7.0.15 sha=0") == (7, 0, 15)
    check_version("7.2.4", "x")
    with pytest.raises(RedisProblem, match=r"Redis 6\.2\.6.*needs Redis >= 7\.0"):
        check_version("6.2.6", "REDIS_URL (redis://h:6379)")


def test_probe_reads_the_version_of_a_live_redis(redis_url: str) -> None:
    version = probe_url(redis_url)
    assert version is not None
    assert parse_version(version) >= (7, 0)
    assert probe_url("redis://127.0.0.1:1/0") is None  # nothing listens there


# --- the supervisor -----------------------------------------------------------------------


def test_stop_all_terminates_groups_and_leaves_no_marked_process(tmp_path: Path) -> None:
    # A child that ignores SIGTERM and spawns a grandchild: only SIGKILL ends them.
    script = ("import signal, subprocess, sys, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print('up', flush=True)\n"
              "time.sleep(60)\n")
    log = (tmp_path / "log.txt").open("w")
    sup = Supervisor("test-" + tmp_path.name[-8:], LogStream(log))
    sup.start(ChildSpec("stubborn", [sys.executable, "-c", script], env={"PATH": "/usr/bin"},
                        ready_line="^up$"))
    sup.wait_ready(["stubborn"], timeout=20)
    assert len(marked_pids(sup.stack_id)) == 2

    started = time.monotonic()
    killed = sup.stop_all(grace=1.0)

    assert time.monotonic() - started < 6
    assert killed
    assert marked_pids(sup.stack_id) == []


# --- one-line errors that say what to do --------------------------------------------------


def test_a_busy_port_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    import socket

    from infra.local.dev import DevError, DevOptions, plan_stack

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DevError) as refused:
            plan_stack(DevOptions(port=port, ui_port=0, template=tmp_path / "none.yaml"))
    assert str(refused.value).startswith(f"port {port} is in use: pass --port N")
    assert "\n" not in str(refused.value)


def test_missing_redis_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from infra.local.redis_local import redis_server_binary

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisProblem) as missing:
        redis_server_binary()
    assert "apt-get install redis-server" in str(missing.value)
    assert "brew install redis" in str(missing.value)


def test_one_stack_per_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from infra.local.dev import DevError, _lock_state_dir

    monkeypatch.setenv("OFFLOAD_STATE_DIR", str(tmp_path))
    first = _lock_state_dir()
    with pytest.raises(DevError, match="already starting or running"):
        _lock_state_dir()
    first.close()
    _lock_state_dir().close()  # free again once the first stack is gone
