"""S3, SES and SQS in place of AWS: moto's server, set up as the deployed stack expects.

Run as ``python -m infra.local.aws_services --port N --config JSON``. It binds moto to
127.0.0.1 (moto's default is every interface), creates the uploads and results buckets,
verifies the SES sender (SES refuses unverified senders) and points the uploads bucket's
ObjectCreated notifications, with the template's key filter, at an SQS queue that
``infra.local.triggers`` turns into ``s3_events`` invocations (as S3 -> SQS -> Lambda
would). It prints ``ready {"queue_url": ...}`` once all of that is done.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from infra.local.lifeline import exit_on_sigterm, exit_with_parent

NOTIFICATION_QUEUE = "offload-local-s3-events"


@dataclass(frozen=True)
class AwsSetup:
    """What to create in moto: buckets, the verified sender, the upload notifications."""

    region: str
    uploads_bucket: str
    results_bucket: str
    ses_sender: str
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)
    # S3 key filter rules as in a bucket notification: [{"Name": "prefix", "Value": ...}]
    filter_rules: tuple[dict[str, str], ...] = field(
        default_factory=lambda: ({"Name": "prefix", "Value": "uploads/"},)
    )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> AwsSetup:
        data = json.loads(raw)
        data["events"] = tuple(data.get("events") or cls.events)
        data["filter_rules"] = tuple(data.get("filter_rules") or ())
        return cls(**data)


def provision(endpoint: str, setup: AwsSetup) -> str:
    """Create everything in ``setup`` on the moto server at ``endpoint``; the queue URL."""
    import boto3

    kwargs: dict[str, Any] = {"endpoint_url": endpoint, "region_name": setup.region}
    s3: Any = boto3.client("s3", **kwargs)
    sqs: Any = boto3.client("sqs", **kwargs)
    for bucket in (setup.uploads_bucket, setup.results_bucket):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": setup.region}
        )
    boto3.client("ses", **kwargs).verify_email_identity(EmailAddress=setup.ses_sender)
    queue_url: str = sqs.create_queue(QueueName=NOTIFICATION_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    configuration: dict[str, Any] = {
        "Id": "offload-local-uploads",
        "QueueArn": queue_arn["Attributes"]["QueueArn"],
        "Events": list(setup.events),
    }
    if setup.filter_rules:
        configuration["Filter"] = {"Key": {"FilterRules": list(setup.filter_rules)}}
    s3.put_bucket_notification_configuration(
        Bucket=setup.uploads_bucket,
        NotificationConfiguration={"QueueConfigurations": [configuration]},
    )
    return queue_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True, help="AwsSetup as JSON")
    args = parser.parse_args()
    exit_on_sigterm()
    exit_with_parent()
    # One line per S3 request would drown the log stream; errors still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        queue_url = provision(f"http://127.0.0.1:{args.port}", AwsSetup.from_json(args.config))
        print("ready " + json.dumps({"queue_url": queue_url}), flush=True)
        threading.Event().wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
