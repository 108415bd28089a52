"""The local event sources: S3 notifications and EventBridge schedules, invoking containers.

Run as ``python -m infra.local.triggers --config PATH`` (a JSON :class:`TriggerConfig`).

- **S3**: moto queues the uploads bucket's notifications in SQS; a long-poll loop takes
  each message, skips ``s3:TestEvent``, completes the record to the shape S3 delivers and
  invokes the S3 function with ``{"Records": [...]}``. A failed invocation leaves the
  message to come back after its visibility timeout, as an SQS-driven Lambda retries;
  after :data:`MAX_RECEIVES` it is dropped with an error line.
- **Schedules**: every enabled schedule from the template fires at its next time
  (``rate`` counted from the stack's start, ``cron`` in UTC or its time zone), delivering
  EventBridge's "Scheduled Event" or the rule's ``Input``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.local.events import is_s3_test_event, normalise_s3_record, schedule_payload
from infra.local.lambda_container import InvokeResult, invoke
from infra.local.lifeline import exit_on_sigterm, exit_with_parent, say
from shared.schedules import ScheduleExpressionError, parse_schedule

MAX_RECEIVES = 3
VISIBILITY_TIMEOUT = 5


@dataclass(frozen=True)
class ScheduleTarget:
    name: str
    rule_name: str
    expression: str
    timezone: str | None
    input: Any
    function_url: str
    timeout: float


@dataclass(frozen=True)
class TriggerConfig:
    region: str
    aws_endpoint_url: str
    queue_url: str
    s3_function_url: str
    s3_function_timeout: float
    schedules: list[ScheduleTarget]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> TriggerConfig:
        data = json.loads(path.read_text())
        data["schedules"] = [ScheduleTarget(**s) for s in data["schedules"]]
        return cls(**data)


def _summary(result: InvokeResult) -> str:
    if result.ok:
        return f"ok in {result.millis:.0f} ms: {json.dumps(result.payload)[:200]}"
    error = result.payload if isinstance(result.payload, dict) else {}
    return (f"FAILED in {result.millis:.0f} ms: {error.get('errorType', 'Error')}: "
            f"{error.get('errorMessage', result.payload)}")


def poll_s3_notifications(config: TriggerConfig, stop: threading.Event) -> None:
    import boto3

    sqs: Any = boto3.client("sqs", endpoint_url=config.aws_endpoint_url, region_name=config.region)
    while not stop.is_set():
        try:
            response = sqs.receive_message(
                QueueUrl=config.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                VisibilityTimeout=VISIBILITY_TIMEOUT,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:  # moto restarting or the stack stopping: try again
            say(f"s3: cannot read the notification queue: {exc}")
            stop.wait(1)
            continue
        for message in response.get("Messages", []):
            if _deliver(config, message):
                sqs.delete_message(QueueUrl=config.queue_url,
                                   ReceiptHandle=message["ReceiptHandle"])


def _deliver(config: TriggerConfig, message: dict[str, Any]) -> bool:
    """Invoke the S3 function for one message; True when the message is done with."""
    body = json.loads(message["Body"])
    if is_s3_test_event(body):
        return True
    records = [normalise_s3_record(r, config.region) for r in body.get("Records", [])]
    if not records:
        return True
    keys = ", ".join(r["s3"]["object"]["key"] for r in records)
    result = invoke(config.s3_function_url, {"Records": records}, config.s3_function_timeout)
    say(f"s3: {records[0]['eventName']} {keys} -> {_summary(result)}")
    if result.ok:
        return True
    receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
    if receives >= MAX_RECEIVES:
        say(f"s3: giving up on {keys} after {receives} attempts")
        return True
    return False


def fire(target: ScheduleTarget, region: str, when: datetime | None = None) -> InvokeResult:
    """Deliver one schedule's event to its function now."""
    event = schedule_payload(target.input, target.rule_name, region, when)
    return invoke(target.function_url, event, target.timeout)


def run_schedules(config: TriggerConfig, stop: threading.Event) -> None:
    origin = datetime.now(UTC)
    upcoming: dict[str, tuple[datetime, Any]] = {}
    for target in config.schedules:
        try:
            schedule = parse_schedule(target.expression, target.timezone)
        except ScheduleExpressionError as exc:
            say(f"schedule: {target.name} will not fire by itself: {exc}")
            continue
        upcoming[target.name] = (schedule.next_after(origin, origin), schedule)
        say(f"schedule: {target.name} {target.expression} next at "
            f"{upcoming[target.name][0]:%Y-%m-%d %H:%M:%S} UTC")
    targets = {t.name: t for t in config.schedules}
    while upcoming and not stop.is_set():
        name, (when, schedule) = min(upcoming.items(), key=lambda item: item[1][0])
        delay = (when - datetime.now(UTC)).total_seconds()
        if delay > 0:
            stop.wait(min(delay, 1.0))
            continue
        result = fire(targets[name], config.region, when)
        say(f"schedule: {name} -> {_summary(result)}")
        try:
            upcoming[name] = (schedule.next_after(datetime.now(UTC), origin), schedule)
        except ScheduleExpressionError as exc:
            say(f"schedule: {name} stops here: {exc}")
            del upcoming[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args()
    exit_on_sigterm()
    exit_with_parent()
    config = TriggerConfig.load(args.config)
    stop = threading.Event()
    threading.Thread(target=run_schedules, args=(config, stop), daemon=True,
                     name="schedules").start()
    poller = None
    if config.s3_function_url:
        poller = threading.Thread(target=poll_s3_notifications, args=(config, stop),
                                  daemon=True, name="s3")
        poller.start()
    else:
        say("s3: no function has an S3 event in the template: uploads trigger nothing")
    say("ready")
    try:
        # The schedules thread ends when nothing is left to fire; the poller never should.
        while poller is None or poller.is_alive():
            time.sleep(0.5)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
