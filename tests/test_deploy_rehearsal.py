"""The deploy, rehearsed in moto's CloudFormation as an operator runs it (docs/DEPLOY.md).

The SAM-transformed template and its nested stacks are created and updated in a private
moto server over HTTP (:mod:`infra.rehearsal`), and ``infra/deploy/push-worker-image.sh``
runs with the real AWS CLI against it. The blocker this guards: a plain ``sam deploy``
after an image push, with the parameters ``sam deploy --guided`` saved, must keep the
workers on the pushed image; before the tag moved to SSM it sent ``WorkerImageTag=""``
and zeroed the service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.rehearsal import ROOT, Rehearsal, moto_server, parameter_values, transform

PUSH = ROOT / "infra" / "deploy" / "push-worker-image.sh"
STACK = "offload"
TAG_PARAMETER = "/offload/prod/worker-image-tag"
# The AWS CLI the script calls, pinned, in a throwaway uv environment (v1 reads
# AWS_ENDPOINT_URL like v2).
AWS_CLI = "awscli==1.42.76"


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return transform(ROOT / "template.yaml")


@pytest.fixture
def rehearsal() -> Iterator[Rehearsal]:
    with moto_server() as endpoint:
        rehearsal = Rehearsal(endpoint)
        rehearsal.setup()
        yield rehearsal


@pytest.fixture(scope="module")
def aws_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding an ``aws`` executable (the pinned CLI)."""
    found = shutil.which("aws")
    if found is not None and "aws-cli/1." in subprocess.run(
            [found, "--version"], capture_output=True, text=True, check=False).stdout:
        return Path(found).parent
    uv = shutil.which("uv")
    assert uv is not None, "uv installs the AWS CLI for this test"
    env_dir = tmp_path_factory.mktemp("awscli")
    subprocess.run([uv, "venv", "-q", str(env_dir)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"),
                    AWS_CLI], check=True)
    return env_dir / "bin"


def run_push(rehearsal: Rehearsal, aws_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{aws_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ENDPOINT_URL": rehearsal.endpoint,
        "AWS_ACCESS_KEY_ID": "rehearsal",
        "AWS_SECRET_ACCESS_KEY": "rehearsal",
        "AWS_DEFAULT_REGION": rehearsal.region,
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    return subprocess.run(["bash", str(PUSH), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, check=False)


def guided_answers(transformed: dict[str, Any]) -> dict[str, str]:
    """What ``sam deploy --guided`` saves in samconfig.toml when every default is taken."""
    return parameter_values(transformed, {
        "SesSender": "jobs@example.com", "AlarmEmail": "ops@example.com",
        "PasswordResetUrlBase": "https://app.example.com/reset?token=",
        "FetchAllowedHosts": "api.example.com,*.partner.example.com"})


def worker_image(rehearsal: Rehearsal) -> tuple[str, int]:
    """(image, desired count) of the deployed worker service."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in rehearsal.describe(STACK)["Outputs"]}
    ecs = rehearsal.client("ecs")
    (service,) = ecs.describe_services(cluster=outputs["ClusterName"],
                                       services=[outputs["ServiceName"]])["services"]
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
    (container,) = task["taskDefinition"]["containerDefinitions"]
    return str(container["image"]), int(service["desiredCount"])


def resolved_tag(rehearsal: Rehearsal, stack: str) -> str:
    params = {str(p["ParameterKey"]): str(p["ParameterValue"])
              for p in rehearsal.describe(stack)["Parameters"]}
    return params["WorkerImageTag"]


def push_image(rehearsal: Rehearsal, tag: str) -> None:
    """An image in the stack's repository, as `docker push` would leave it."""
    outputs = {o["OutputKey"]: o["OutputValue"] for o in rehearsal.describe(STACK)["Outputs"]}
    manifest = {"schemaVersion": 2, "mediaType":
                "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": f"sha256:{'0' * 64}", "size": 1,
                           "mediaType": "application/vnd.docker.container.image.v1+json"},
                "layers": []}
    rehearsal.client("ecr").put_image(
        repositoryName=outputs["WorkerRepositoryUri"].split("/", 1)[1],
        imageManifest=json.dumps(manifest), imageTag=tag)


def test_first_deploy_push_and_redeploy_keep_the_workers_on_the_pushed_image(
        rehearsal: Rehearsal, aws_bin: Path, transformed: dict[str, Any]) -> None:
    init = run_push(rehearsal, aws_bin, "--init", "--stage", "prod")
    assert init.returncode == 0, init.stderr
    saved = guided_answers(transformed)

    # First deploy: no image yet, so no tasks (the workers-off alarm covers waiting jobs).
    assert rehearsal.deploy(STACK, transformed, saved)["StackStatus"] == "CREATE_COMPLETE"
    assert worker_image(rehearsal)[1] == 0

    push_image(rehearsal, "v1")
    pushed = run_push(rehearsal, aws_bin, "--stack", STACK, "--tag", "v1", "--no-build",
                      "--deploy")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    # moto re-reads SSM on the update but, unlike CloudFormation, leaves the nested stack
    # alone when only a resolved value changed: the parent shows what was resolved.
    assert resolved_tag(rehearsal, STACK) == "v1"

    # The operator's next routine deploy, with samconfig.toml's saved parameters.
    assert rehearsal.deploy(STACK, transformed, saved)["StackStatus"] == "UPDATE_COMPLETE"
    assert resolved_tag(rehearsal, STACK) == "v1"

    # --init again never resets a pushed tag; "none" cannot be pushed.
    again = run_push(rehearsal, aws_bin, "--init", "--stage", "prod")
    assert again.returncode == 0 and "left as it is" in again.stdout
    assert rehearsal.client("ssm").get_parameter(Name=TAG_PARAMETER)["Parameter"]["Value"] == "v1"
    refused = run_push(rehearsal, aws_bin, "--stack", STACK, "--tag", "none", "--no-build")
    assert refused.returncode == 2 and "invalid tag" in refused.stderr


def test_rollback_to_a_previous_tag_and_a_missing_tag_is_refused(
        rehearsal: Rehearsal, aws_bin: Path, transformed: dict[str, Any]) -> None:
    assert run_push(rehearsal, aws_bin, "--init").returncode == 0
    rehearsal.deploy(STACK, transformed, guided_answers(transformed))
    for tag in ("v1", "v2"):
        push_image(rehearsal, tag)
        done = run_push(rehearsal, aws_bin, "--tag", tag, "--no-build", "--deploy")
        assert done.returncode == 0, done.stderr
    assert resolved_tag(rehearsal, STACK) == "v2"

    back = run_push(rehearsal, aws_bin, "--tag", "v1", "--no-build", "--deploy")
    assert back.returncode == 0, back.stderr
    assert resolved_tag(rehearsal, STACK) == "v1"

    missing = run_push(rehearsal, aws_bin, "--tag", "v9", "--no-build", "--deploy")
    assert missing.returncode == 1 and "no image tagged v9" in missing.stderr
    assert resolved_tag(rehearsal, STACK) == "v1"


def test_a_stack_created_with_a_pushed_tag_runs_that_image(
        rehearsal: Rehearsal, transformed: dict[str, Any]) -> None:
    rehearsal.client("ssm").put_parameter(Name=TAG_PARAMETER, Type="String", Value="v3")
    rehearsal.deploy(STACK, transformed, guided_answers(transformed))
    image, _ = worker_image(rehearsal)
    assert image.endswith("/offload-prod-worker:v3")


def test_a_reference_to_a_missing_nested_output_fails_the_rehearsal(
        rehearsal: Rehearsal, transformed: dict[str, Any]) -> None:
    rehearsal.client("ssm").put_parameter(Name=TAG_PARAMETER, Type="String", Value="none")
    broken = json.loads(json.dumps(transformed))
    broken["Resources"]["WorkerStack"]["Properties"]["Parameters"]["WorkerSecurityGroupId"] = {
        "Fn::GetAtt": ["NetworkStack", "Outputs.NoSuchOutput"]}
    with pytest.raises(Exception, match="NoSuchOutput"):
        rehearsal.deploy(STACK, broken, guided_answers(broken))
