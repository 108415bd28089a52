"""Settings: unsafe defaults refused in production, secrets resolved from Secrets Manager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.aws import secrets_client
from shared.config import DEV_SIGNING_SECRET, Settings, resolve_secrets


def test_production_refuses_the_development_signing_secret() -> None:
    with pytest.raises(ValidationError, match="OFFLOAD_SIGNING_SECRET must be set"):
        Settings(env="production")
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(env="production", signing_secret="short")
    ok = Settings(env="production", signing_secret="x" * 40)
    assert ok.signing_secret.get_secret_value() == "x" * 40


def test_development_defaults_work_without_any_environment() -> None:
    s = Settings()
    assert s.env == "development"
    assert s.signing_secret.get_secret_value() == DEV_SIGNING_SECRET


def test_the_replica_wait_must_end_before_the_socket_timeout() -> None:
    # A longer wait would end as a dead connection, not as "no replica confirmed it".
    assert Settings(replica_wait_ms=500).replica_wait_ms == 500
    with pytest.raises(ValidationError, match="OFFLOAD_REPLICA_WAIT_MS must be below"):
        Settings(replica_wait_ms=2000, redis_socket_timeout_seconds=2)


def test_secret_arns_resolve_to_values_and_are_validated(moto_endpoint: str) -> None:
    # GIVEN secrets in (moto's) Secrets Manager, as the SAM template creates them
    base = Settings(aws_endpoint_url=moto_endpoint)
    sm = secrets_client(base)
    url_arn = sm.create_secret(Name="offload/redis-url-t1",
                               SecretString="rediss://:tok@cache.internal:6379/0")["ARN"]
    key_arn = sm.create_secret(Name="offload/signing-t1", SecretString="s" * 48)["ARN"]
    weak_arn = sm.create_secret(Name="offload/signing-weak-t1", SecretString="weak")["ARN"]
    # WHEN production settings name them by ARN
    arns = Settings(env="production", aws_endpoint_url=moto_endpoint,
                    redis_url_secret_arn=url_arn, signing_secret_arn=key_arn)
    resolved = resolve_secrets(arns)
    # THEN the values replace the ARNs
    assert resolved.redis_url == "rediss://:tok@cache.internal:6379/0"
    assert resolved.signing_secret.get_secret_value() == "s" * 48
    assert resolved.redis_url_secret_arn == resolved.signing_secret_arn == ""
    # AND a weak secret is refused just as if it had been given directly
    weak = arns.model_copy(update={"signing_secret_arn": weak_arn})
    with pytest.raises(ValidationError, match="at least 32 characters"):
        resolve_secrets(weak)


def test_no_arns_means_no_secrets_manager_call() -> None:
    s = Settings(aws_endpoint_url="http://127.0.0.1:1")  # unreachable: a call would fail
    assert resolve_secrets(s) is s


def test_production_workers_refuse_example_values() -> None:
    from shared.config import production_problems

    strong = "x" * 40
    defaults = Settings(env="production", signing_secret=strong)
    problems = production_problems(defaults)
    assert len(problems) == 2
    assert "OFFLOAD_PASSWORD_RESET_URL_BASE" in problems[0]
    assert "OFFLOAD_FETCH_ALLOWED_HOSTS" in problems[1]
    (other,) = production_problems(defaults.model_copy(update={
        "password_reset_url_base": "https://shop.example.org/reset?t=",
        "fetch_allowed_hosts": ("api.partner.com",)}))
    assert "shop.example.org" in other
    configured = defaults.model_copy(update={
        "password_reset_url_base": "https://app.acme.io/reset?token=",
        "fetch_allowed_hosts": ("api.partner.com",)})
    assert production_problems(configured) == []
    # Development keeps its working defaults.
    assert production_problems(Settings()) == []


def test_a_production_worker_with_example_values_exits_with_the_reasons(
        tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "OFFLOAD_ENV": "production",
           "OFFLOAD_SIGNING_SECRET": "x" * 40, "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "offload.cli", "worker", "--state-dir",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode != 0
    assert "refusing to start in production" in done.stderr
    assert "PasswordResetUrlBase" in done.stderr and "FetchAllowedHosts" in done.stderr
