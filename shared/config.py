"""One validated settings object for every part of Offload (prefix ``OFFLOAD_``).

Defaults work on one machine (``offload dev``); outside development the validator refuses
the unsafe ones, so a deployment that forgot to set the signing secret fails at start-up
instead of running with a key that is printed in this file.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.aws import secrets_client

DEV_SIGNING_SECRET = "offload-dev-signing-secret-not-for-production"  # noqa: S105


class Settings(BaseSettings):
    """Every tunable of Offload; read from ``OFFLOAD_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="OFFLOAD_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"

    # Queue (Streaq on Redis/Valkey)
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "offload"
    signing_secret: SecretStr = SecretStr(DEV_SIGNING_SECRET)
    priorities: tuple[str, ...] = ("low", "normal", "high")
    result_retention_seconds: int = Field(default=24 * 3600, ge=60)
    dead_letter_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # Per-owner quotas shared by every API instance (shared/limits.py); 0 turns one off.
    limit_enqueue_per_second: float = Field(default=20.0, ge=0)
    limit_enqueue_burst: int = Field(default=100, ge=1)
    limit_unfinished_jobs: int = Field(default=10_000, ge=0)
    limit_long_polls: int = Field(default=5, ge=0)
    # At most this many running jobs per owner across all workers (worker/fair_share.py);
    # 0: no limit.
    owner_concurrency: int = Field(default=8, ge=0)
    # An owner with this many unfinished jobs has the next ones enqueued at the lowest
    # priority, so a flood waits behind other owners' work instead of in front of it
    # (counted by the enqueue quota's own read, shared/limits.py); 0: never.
    fair_share_demote_after: int = Field(default=32, ge=0)
    # A worker keeps a freed fair-share slot this long for the owner's next job, which then
    # starts without a round trip (worker/fair_share.py); 0: give it back at once.
    fair_share_hold_seconds: float = Field(default=1.0, ge=0, le=60)
    # Job events (shared/job_events.py): an EventBridge bus name, or a JSON-lines file (the
    # dev stack); neither: off.
    job_events_bus: str = ""
    job_events_file: str = ""
    # A job's result above this (JSON bytes) fails it for good; 0 turns the cap off.
    result_max_bytes: int = Field(default=256 * 1024, ge=0)
    # After each enqueue, wait up to this long for a replica to hold the job (Redis
    # ``WAIT 1 <ms>``) and refuse the enqueue (503, safe to retry with the same key)
    # otherwise: replication is asynchronous, so a failover can lose what the primary
    # alone acknowledged (docs/RELIABILITY.md). 0: no wait (a cache without a replica).
    replica_wait_ms: int = Field(default=0, ge=0)

    # Worker
    worker_concurrency: int = Field(default=16, ge=1)
    worker_grace_period_seconds: int = Field(default=30, ge=0)
    # Messages a worker process fetches ahead of its free slots, so a finished job's slot
    # is refilled without waiting for Redis (Streaq's default: as many as its concurrency).
    # 0 fetches only for free slots: for long jobs, where a buffered message would wait
    # long enough to be reclaimed by another worker.
    worker_prefetch: int | None = Field(default=None, ge=0)
    # How long a running job may go without its worker's heartbeat before another worker
    # reclaims it. Shorter: faster recovery after a crash; longer: fewer duplicate runs
    # when a worker is merely slow (a blocked event loop looks like a dead worker).
    worker_idle_timeout_seconds: float = Field(default=60.0, gt=1)
    # Redis socket timeouts: a connection that stops answering without closing is noticed
    # after this long instead of hanging forever.
    redis_socket_timeout_seconds: float = Field(default=10.0, gt=0)
    # Job metrics as CloudWatch EMF lines on the worker's stdout (worker/job_metrics.py):
    # on in AWS (infra/worker.yaml), off by default so a local worker's log stays readable.
    worker_metrics: bool = False
    worker_metrics_namespace: str = Field(default="Offload", min_length=1, max_length=255)
    # Buffered values are written this often (and at shutdown).
    worker_metrics_interval_seconds: float = Field(default=10.0, gt=0)
    # How often a worker PINGs Redis through its own connections (each PING bounded by the
    # socket timeout): a silent Redis is noticed within this plus the socket timeout, and
    # the worker reconnects in place (worker/redis_watchdog.py).
    worker_redis_check_seconds: float = Field(default=5.0, gt=0)
    # On ECS (ECS_AGENT_URI set), a worker task holds scale-in protection while any of its
    # processes runs a job, and releases it once idle this long (worker/task_protection.py).
    task_protection_idle_seconds: float = Field(default=10.0, gt=0)
    # The ECS cluster and service of the workers: queue_metrics divides the jobs by the
    # service's running tasks. Empty (the local stack): the machine's workers are one task.
    worker_cluster: str = ""
    worker_service: str = ""

    # AWS (an endpoint override points boto3 at moto's server locally)
    aws_region: str = "eu-west-1"
    aws_endpoint_url: str | None = None
    uploads_bucket: str = "offload-uploads-local"
    results_bucket: str = "offload-results-local"
    ses_sender: str = "no-reply@offload.example.com"
    # The SES configuration set every e-mail is sent with (bounce and complaint events,
    # reputation metrics, suppression); empty: none (moto's SES locally).
    ses_configuration_set: str = ""

    # MongoDB (beanie). Empty: the in-memory stand-in (development and tests only).
    mongodb_uri: str = ""
    mongodb_database: str = "offload"

    # Uploads and images
    upload_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    upload_url_expiry_seconds: int = Field(default=300, ge=10, le=3600)
    image_max_pixels: int = Field(default=50_000_000, ge=1)
    image_max_side: int = Field(default=2048, ge=16)
    image_thumbnail_side: int = Field(default=256, ge=16)

    # API
    api_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    api_max_wait_seconds: int = Field(default=20, ge=0, le=29)

    # Where password-reset e-mails point; the token is appended.
    password_reset_url_base: str = "https://app.example.com/reset?token="  # noqa: S105

    # fetch_external_data: hosts a job may fetch from ("*.example.com" allowed).
    fetch_allowed_hosts: tuple[str, ...] = ()
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)

    # In AWS, Lambdas get secrets as Secrets Manager ARNs (their environment is visible in
    # the console); get_settings() resolves them into redis_url / signing_secret at cold start.
    # Roles: read from this JWT claim (a list, API Gateway's "[a b]" form, or a space-
    # separated string such as "scope"); company-wide jobs need admin_role.
    # The schedules (name -> EventBridge expression) the console's Operations page lists.
    schedules: dict[str, str] = Field(default_factory=dict)
    roles_claim: str = "cognito:groups"
    admin_role: str = "admin"
    # The console's sign-in (functions/routes/console.py): the Cognito hosted UI's domain
    # (https://...) and the console's public app client.
    cognito_domain: str = ""
    console_client_id: str = ""
    redis_url_secret_arn: str = ""
    signing_secret_arn: str = ""

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        # MongoDB is not checked here: Lambdas never open it. shared.db refuses the
        # in-memory stand-in in production, so a worker without a URI fails at start-up.
        if self.env == "production" and not self.signing_secret_arn:
            secret = self.signing_secret.get_secret_value()
            if secret == DEV_SIGNING_SECRET:
                raise ValueError("OFFLOAD_SIGNING_SECRET must be set outside development")
            if len(secret) < 32:
                raise ValueError("OFFLOAD_SIGNING_SECRET must be at least 32 characters")
        return self

    @model_validator(mode="after")
    def _wait_within_socket_timeout(self) -> Self:
        # A wait longer than the socket timeout would end as a dead connection, not as
        # "no replica confirmed it".
        if self.replica_wait_ms >= self.redis_socket_timeout_seconds * 1000:
            raise ValueError("OFFLOAD_REPLICA_WAIT_MS must be below "
                             "OFFLOAD_REDIS_SOCKET_TIMEOUT_SECONDS")
        return self


# Hosts of the documentation examples (RFC 2606): a URL on one of them was never configured.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")


def production_problems(settings: Settings) -> list[str]:
    """Why ``settings`` must not run a production worker: example values still in place."""
    from urllib.parse import urlsplit

    if settings.env != "production":
        return []
    problems = []
    host = (urlsplit(settings.password_reset_url_base).hostname or "").lower()
    if not host or any(host == d or host.endswith("." + d) for d in EXAMPLE_DOMAINS):
        problems.append(
            f"OFFLOAD_PASSWORD_RESET_URL_BASE is {settings.password_reset_url_base!r}: "
            "set your app's reset page (template parameter PasswordResetUrlBase)")
    if not settings.fetch_allowed_hosts:
        problems.append(
            "OFFLOAD_FETCH_ALLOWED_HOSTS is empty, so fetch jobs and webhooks can reach no "
            "host: list the hosts they may call (template parameter FetchAllowedHosts)")
    return problems


def resolve_secrets(settings: Settings) -> Settings:
    """Replace ``*_secret_arn`` settings by the secrets' values (one GetSecretValue each),
    then validate the result as if the values had been given directly."""
    sources = {"redis_url": "redis_url_secret_arn", "signing_secret": "signing_secret_arn"}
    wanted = {field: arn_field for field, arn_field in sources.items()
              if getattr(settings, arn_field)}
    if not wanted:
        return settings
    client = secrets_client(settings)
    values = dict(settings)
    for field, arn_field in wanted.items():
        secret = client.get_secret_value(SecretId=getattr(settings, arn_field))
        values[field], values[arn_field] = secret["SecretString"], ""
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (secrets resolved)."""
    return resolve_secrets(Settings())
