"""boto3 clients built from settings: one place for region, endpoint override and retries.

Locally ``OFFLOAD_AWS_ENDPOINT_URL`` points every client at moto's server; in AWS it is
unset and boto3 uses the real endpoints. boto3 is imported here, on first use, so that
importing ``shared`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient


class AwsSettings(Protocol):
    """Where the clients connect: ``shared.config.Settings`` is one. A protocol, so that this
    module needs nothing from ``shared.config``, which uses it to resolve secrets."""

    @property
    def aws_region(self) -> str: ...

    @property
    def aws_endpoint_url(self) -> str | None: ...


def _client(service: str, settings: AwsSettings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.aws_region,
        # "standard" retries throttling and 5xx with backoff; job-level retries sit on top.
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
        s3={"addressing_style": "path"} if settings.aws_endpoint_url else None,
        signature_version="s3v4" if service == "s3" else None,
    )
    session: Any = boto3.session.Session()
    return session.client(service, endpoint_url=settings.aws_endpoint_url or None, config=config)


def s3_client(settings: AwsSettings) -> S3Client:
    return _client("s3", settings)  # type: ignore[no-any-return]


def ses_client(settings: AwsSettings) -> SESClient:
    return _client("ses", settings)  # type: ignore[no-any-return]


def events_client(settings: AwsSettings) -> Any:
    """EventBridge, with short timeouts: a job event is never worth a slow request."""
    import boto3
    from botocore.config import Config

    config = Config(region_name=settings.aws_region, connect_timeout=2, read_timeout=3,
                    retries={"max_attempts": 2, "mode": "standard"})
    session: Any = boto3.session.Session()
    return session.client("events", endpoint_url=settings.aws_endpoint_url or None,
                          config=config)


def ecs_client(settings: AwsSettings) -> Any:
    """ECS: queue_metrics reads the worker service's running task count."""
    return _client("ecs", settings)


def secrets_client(settings: AwsSettings) -> SecretsManagerClient:
    return _client("secretsmanager", settings)  # type: ignore[no-any-return]
