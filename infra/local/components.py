"""What ``offload dev`` runs: one :class:`ChildSpec` per component, and their settings.

Every process gets the same ``OFFLOAD_*`` settings (the Lambda containers additionally the
function's literal environment from the template and Lambda's own variables), so the
handlers, workers and the web UI agree on Redis, the queue, the buckets and MongoDB exactly
as the deployed pieces do through their configuration.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infra.local.aws_services import AwsSetup
from infra.local.supervisor import ChildSpec
from infra.local.template import FunctionDef, S3Trigger, Template

if TYPE_CHECKING:
    from shared.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# The handlers the deployed stack runs, for when there is no template to read them from.
DEFAULT_HANDLERS = {
    "api": "functions.api.lambda_handler",
    "s3_events": "functions.s3_events.lambda_handler",
    "scheduler": "functions.scheduler.lambda_handler",
    "queue_metrics": "functions.queue_metrics.lambda_handler",
}
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "offload-local",
    "AWS_SECRET_ACCESS_KEY": "offload-local",  # moto accepts any credentials
}
# Beside every AWS_* variable: these would reach another process's configuration.
_DROPPED_ENV = ("OFFLOAD_STATE_DIR", "OFFLOAD_DEV_TOKEN", "OFFLOAD_WORKER_STATE_DIR")


@dataclass(frozen=True)
class Ports:
    api: int
    ui: int
    aws: int
    redis: int
    mongo: int
    fixtures: int


@dataclass
class FunctionPlan:
    """A template function and the local containers that run it."""

    name: str  # short component name: the handler's module ("api", "s3_events")
    function: FunctionDef
    ports: list[int] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def component(self, index: int) -> str:
        return self.name if len(self.ports) == 1 else f"{self.name}-{index + 1}"


def short_name(function: FunctionDef) -> str:
    return function.handler.rpartition(".")[0].rpartition(".")[2] or function.logical_id


def default_template() -> Template:
    """The four functions with Lambda defaults, for a checkout without template.yaml."""
    functions = {
        name: FunctionDef(name, handler, 30.0, 512, {})
        for name, handler in DEFAULT_HANDLERS.items()
    }
    return Template(functions, (), (S3Trigger("s3_events", ("s3:ObjectCreated:*",),
                                              ({"Name": "prefix", "Value": "uploads/"},)),), ())


def base_env(settings_env: dict[str, str]) -> dict[str, str]:
    """The caller's environment (its other ``OFFLOAD_*`` settings too), minus real AWS
    credentials and configuration, plus the stack's settings over everything."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k not in _DROPPED_ENV}
    env.update(FAKE_AWS)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(settings_env)
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``OFFLOAD_*`` (and AWS region) variables that make every component of the stack
    see ``settings``: Redis, the queue, moto's endpoint, the buckets, MongoDB."""
    return {
        "OFFLOAD_ENV": settings.env,
        "OFFLOAD_REDIS_URL": settings.redis_url,
        "OFFLOAD_QUEUE_NAME": settings.queue_name,
        "OFFLOAD_AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "OFFLOAD_AWS_REGION": settings.aws_region,
        "OFFLOAD_UPLOADS_BUCKET": settings.uploads_bucket,
        "OFFLOAD_RESULTS_BUCKET": settings.results_bucket,
        "OFFLOAD_SES_SENDER": settings.ses_sender,
        "OFFLOAD_MONGODB_URI": settings.mongodb_uri,
        "OFFLOAD_FETCH_ALLOWED_HOSTS": json.dumps(list(settings.fetch_allowed_hosts)),
        # Ctrl-C must stop the stack in seconds, not wait out a production drain period.
        "OFFLOAD_WORKER_GRACE_PERIOD_SECONDS": os.environ.get(
            "OFFLOAD_WORKER_GRACE_PERIOD_SECONDS", "2"),
        "AWS_DEFAULT_REGION": settings.aws_region,
        "AWS_REGION": settings.aws_region,
    }


# A quiet stack's Lambda containers log warnings and errors only: the gateway's access
# line already says each request happened.
QUIET_LAMBDA_ENV = {"POWERTOOLS_LOG_LEVEL": "WARNING"}


def container_spec(plan: FunctionPlan, index: int, env: dict[str, str],
                   verbose: bool = True) -> ChildSpec:
    """A local Lambda container for ``plan``'s function, as SAM would configure it
    (quieter than the template says unless ``verbose``)."""
    fn = plan.function
    lambda_env = {
        **env,
        **{k: v for k, v in fn.environment.items() if k not in env},
        **({} if verbose else QUIET_LAMBDA_ENV),
        "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.logical_id}",
        # What `sam local` sets; Powertools' Tracer switches itself off (no X-Ray daemon here).
        "AWS_SAM_LOCAL": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    # The handler is imported from the source tree (PYTHONPATH is the repo root), not from
    # the CodeUri build directory, which may hold a stale artifact.
    port = plan.ports[index]
    return ChildSpec(
        name=plan.component(index),
        argv=[PYTHON, "-m", "infra.local.lambda_container", "--name", fn.logical_id,
              "--handler", fn.handler, "--port", str(port), "--timeout", str(fn.timeout),
              "--memory", str(fn.memory)],
        env=lambda_env, ready_port=port, restart=True, cwd=str(REPO_ROOT),
    )


def aws_spec(port: int, setup: AwsSetup, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="aws",
        argv=[PYTHON, "-m", "infra.local.aws_services", "--port", str(port),
              "--config", setup.to_json()],
        env=env, ready_line=r"^ready ", cwd=str(REPO_ROOT), service=True,
    )


def mongo_spec(port: int, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="mongo",
        argv=[PYTHON, "-m", "infra.local.mongo_standin", "--port", str(port)],
        env=env, ready_line=rf"listening on 127\.0\.0\.1:{port}", cwd=str(REPO_ROOT),
        service=True,
    )


def fixtures_spec(port: int, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="fixtures",
        argv=[PYTHON, "-m", "infra.local.fixtures", "--port", str(port)],
        env=env, ready_port=port, restart=True, cwd=str(REPO_ROOT), service=True,
    )


def workers_spec(processes: int, state_dir: Path, env: dict[str, str],
                 verbose: bool = False) -> ChildSpec:
    return ChildSpec(
        name="worker",
        argv=[PYTHON, "-m", "offload.cli", "worker", "--processes", str(processes),
              "--state-dir", str(state_dir / "workers"), *(["--verbose"] if verbose else [])],
        env=env, cwd=str(REPO_ROOT),
    )


def streaq_ui_spec(port: int, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="streaq-ui",
        argv=[PYTHON, "-m", "streaq", "web", "worker.app:worker", "--host", "127.0.0.1",
              "--port", str(port)],
        env=env, ready_port=port, restart=True, cwd=str(REPO_ROOT),
    )


def gateway_spec(port: int, config_path: Path, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="gateway",
        argv=[PYTHON, "-m", "infra.local.gateway", "--config", str(config_path)],
        env=env, ready_port=port, restart=True, cwd=str(REPO_ROOT),
    )


def triggers_spec(config_path: Path, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name="triggers",
        argv=[PYTHON, "-m", "infra.local.triggers", "--config", str(config_path)],
        env=env, ready_line=r"^ready$", restart=True, cwd=str(REPO_ROOT),
    )
