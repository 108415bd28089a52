"""Deploy rehearsal: the SAM-transformed template and its nested stacks, created and
updated in moto's CloudFormation over HTTP, with no AWS account.

CloudFormation itself resolves what cfn-lint cannot see: nested stack outputs read with
``GetAtt Stack.Outputs.X``, the parameters each nested stack is given, conditions with
real parameter values, and SSM-typed parameters. moto implements those, but not every
resource type, so a resource it cannot create is *shimmed*: removed, and every ``Ref``,
``GetAtt`` and ``${...}`` naming it replaced by a marker string ``shim:<Id>[.<Attr>]``.
A reference to a resource that does not exist is not shimmed, so it still fails. The
shimmed types are listed in :data:`SHIMMED` (and in docs/DEPLOY.md) with the reason.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The translator aws-sam-cli 1.170 ships with (infra/validate.sh pins that CLI).
SAM_TRANSLATOR = "aws-sam-translator==1.115.0"
REGION = "us-east-1"
TEMPLATES_BUCKET = "rehearsal-templates"
ARTIFACTS_BUCKET = "offline-artifacts"

# Reads a SAM template on argv[1], prints the CloudFormation it becomes. Local CodeUri
# paths become s3://offline-artifacts/<path>, as `sam validate` does (the translator takes
# no local paths); a managed policy named without its ARN would need IAM, so it fails.
_TRANSFORM = r"""
import json, sys
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class OfflinePolicies:
    def load(self):
        raise RuntimeError("a managed policy is named without its ARN: resolving it needs IAM")

with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
sections = [template.get("Globals", {}).get("Function", {})] + [
    r.get("Properties", {}) for r in template["Resources"].values()
    if r.get("Type") == "AWS::Serverless::Function"]
for props in sections:
    if isinstance(props.get("CodeUri"), str):
        props["CodeUri"] = "s3://offline-artifacts/" + props["CodeUri"]
try:
    out = transform(template, {}, OfflinePolicies())
except InvalidDocumentException as exc:
    sys.exit("; ".join(str(cause) for cause in exc.causes))
json.dump(out, sys.stdout)
"""


def transform(template: Path, region: str = REGION) -> dict[str, Any]:
    """``template`` (SAM) as the CloudFormation the SAM transform makes of it, offline.

    Runs the pinned translator in a throwaway uv environment unless it is importable.
    """
    import importlib.util

    if importlib.util.find_spec("samtranslator") is not None:
        command = [sys.executable, "-c", _TRANSFORM]
    else:
        uv = shutil.which("uv")
        if uv is None:
            raise RuntimeError("neither samtranslator nor uv is available to run the SAM transform")
        command = [uv, "run", "--no-project", "--with", SAM_TRANSLATOR, "python", "-c", _TRANSFORM]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = region
    done = subprocess.run([*command, str(template)], capture_output=True, text=True, env=env,
                          cwd=template.parent, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"SAM transform failed: {done.stderr.strip()}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out

# Types moto's CloudFormation accepts but cannot create from this template.
SHIMMED_SUPPORTED = {
    # moto looks the function up by the literal FunctionName; ours name an alias or a
    # shimmed function version.
    "AWS::Lambda::Permission": "moto resolves FunctionName only for a plain function",
}

_SUB_VAR = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.([A-Za-z0-9.]+))?\}")


@dataclass
class ShimReport:
    """What :func:`shim` removed, per logical id, with its type."""

    removed: dict[str, str] = field(default_factory=dict)


def shim(template: dict[str, Any], supported: Callable[[str], bool],
         values: dict[str, str]) -> ShimReport:
    """Remove the resources moto cannot create and replace references to them (in place).

    ``values`` are the deploy's parameter values by name: moto has no ``Fn::Cidr``, so a
    ``Fn::Cidr`` of a parameter is computed here from its value.
    """
    template["Resources"] = _cidr(template["Resources"], values)
    resources: dict[str, Any] = template["Resources"]
    report = ShimReport()
    for logical_id, resource in list(resources.items()):
        kind = resource["Type"]
        if kind == "AWS::CloudFormation::Stack":
            continue
        if not supported(kind) or kind in SHIMMED_SUPPORTED:
            report.removed[logical_id] = kind
            del resources[logical_id]
    gone = set(report.removed)
    for section in ("Resources", "Outputs"):
        if section in template:
            template[section] = _replace(template[section], gone)
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in gone]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
    return report


def in_dependency_order(template: dict[str, Any]) -> None:
    """Reorder Resources so each follows what it references (in place).

    CloudFormation orders creation by the dependency graph; moto creates in template order
    and resolves ``GetAtt`` only on resources already created.
    """
    resources: dict[str, Any] = template["Resources"]
    needs = {logical_id: _references(resource, set(resources)) - {logical_id}
             for logical_id, resource in resources.items()}
    ordered: dict[str, Any] = {}
    visiting: set[str] = set()

    def visit(logical_id: str) -> None:
        if logical_id in ordered:
            return
        if logical_id in visiting:
            raise ValueError(f"circular dependency through {logical_id}")
        visiting.add(logical_id)
        for other in sorted(needs[logical_id]):
            visit(other)
        visiting.discard(logical_id)
        ordered[logical_id] = resources[logical_id]

    for logical_id in resources:
        visit(logical_id)
    template["Resources"] = ordered


def _references(node: Any, names: set[str]) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _references(item, names)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value.split(".", 1)[0] if isinstance(value, str) else value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(m.group(1) for m in _SUB_VAR.finditer(text))
                found |= _references(value, names) if not isinstance(value, str) else set()
            elif key == "DependsOn":
                found.update([value] if isinstance(value, str) else value)
            else:
                found |= _references(value, names)
    return found & names


def _cidr(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_cidr(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::Cidr"}:
        block, count, bits = node["Fn::Cidr"]
        if isinstance(block, dict):
            block = values[block["Ref"]]
        network = ipaddress.ip_network(block)
        prefix = network.max_prefixlen - int(bits)
        subnets = network.subnets(new_prefix=prefix)
        return [str(next(subnets)) for _ in range(int(count))]
    return {key: _cidr(value, values) for key, value in node.items()}


def _marker(logical_id: str, attribute: str | None = None) -> str:
    return f"shim:{logical_id}" + (f".{attribute}" if attribute else "")


def _replace(node: Any, gone: set[str]) -> Any:
    if isinstance(node, list):
        return [_replace(item, gone) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] in gone:
        return _marker(node["Ref"])
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if target[0] in gone:
            return _marker(target[0], target[1])
    if set(node) == {"Fn::Sub"}:
        value = node["Fn::Sub"]
        text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])

        def swap(match: re.Match[str]) -> str:
            name, attribute = match.group(1), match.group(2)
            if name in gone and name not in variables:
                return _marker(name, attribute)
            return match.group(0)

        text = _SUB_VAR.sub(swap, text)
        replaced_vars = _replace(variables, gone)
        return {"Fn::Sub": text if not replaced_vars else [text, replaced_vars]}
    return {key: _replace(value, gone) for key, value in node.items()}


def export_nested_outputs(parent: dict[str, Any], children: dict[str, dict[str, Any]],
                          prefix: str) -> None:
    """moto's nested stacks have no ``GetAtt Stack.Outputs.X``: export each child output as
    ``<prefix>-<Stack>-<X>`` and import it in the parent instead (in place). A parent that
    reads an output the child lacks then fails with moto's ``ExportNotFound``."""
    for logical_id, child in children.items():
        for name, output in child.get("Outputs", {}).items():
            output["Export"] = {"Name": f"{prefix}-{logical_id}-{name}"}
    for section in ("Resources", "Outputs"):
        if section in parent:
            parent[section] = _imports(parent[section], set(children), prefix)


def _imports(node: Any, stacks: set[str], prefix: str) -> Any:
    if isinstance(node, list):
        return [_imports(item, stacks, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if target[0] in stacks and target[1].startswith("Outputs."):
            return {"Fn::ImportValue":
                    f"{prefix}-{target[0]}-{target[1].removeprefix('Outputs.')}"}
    return {key: _imports(value, stacks, prefix) for key, value in node.items()}


def nested_templates(template: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(logical id, resource) of every nested stack."""
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudFormation::Stack":
            yield logical_id, resource


def load_nested(root: Path, path: str) -> dict[str, Any]:
    """A nested stack's YAML file as plain JSON-able CloudFormation."""
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

    loaded: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(root / path))))
    return loaded


def moto_supports(kind: str) -> bool:
    """Whether moto's CloudFormation can create resources of type ``kind``."""
    from moto.backends import get_backend  # noqa: F401  (imports register the models)
    from moto.cloudformation.parsing import get_model_map

    return kind in get_model_map()


def parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Every parameter's value for a deploy: ``given`` over the template's defaults."""
    values = {name: str(spec.get("Default", "")) for name, spec in
              template.get("Parameters", {}).items()}
    values.update(given)
    return values


@dataclass
class Rehearsal:
    """Deploys the transformed template with its nested stacks into moto at ``endpoint``."""

    endpoint: str
    root: Path = ROOT
    region: str = REGION
    shimmed: dict[str, dict[str, str]] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        import boto3

        # moto accepts any credentials; these only keep the real ones out of the way.
        kwargs: dict[str, Any] = {"endpoint_url": self.endpoint, "region_name": self.region,
                                  "aws_access_key_id": "rehearsal",
                                  "aws_secret_access_key": "rehearsal"}
        make: Any = boto3.client
        return make(service, **kwargs)

    def setup(self) -> None:
        """The buckets the templates and the (placeholder) function code are read from,
        and an export: moto gives a stack created while no export exists a private,
        always-empty view of the exports, so ``ImportValue`` would never resolve."""
        s3 = self.client("s3")
        for bucket in (TEMPLATES_BUCKET, ARTIFACTS_BUCKET):
            s3.create_bucket(Bucket=bucket)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("functions/__init__.py", "")
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key="infra/build", Body=code.getvalue())
        anchor = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                  "Outputs": {"Anchor": {"Value": "anchor", "Export": {"Name": "rehearsal"}}}}
        self.client("cloudformation").create_stack(StackName="rehearsal-anchor",
                                                   TemplateBody=json.dumps(anchor))

    def prepare(self, stack: str, transformed: dict[str, Any],
                parameters: dict[str, str]) -> dict[str, Any]:
        """The parent template to deploy, its nested templates shimmed and uploaded."""
        parent: dict[str, Any] = json.loads(json.dumps(transformed))
        values = parameter_values(parent, parameters)
        children: dict[str, dict[str, Any]] = {}
        s3 = self.client("s3")
        for logical_id, resource in nested_templates(parent):
            path = resource["Properties"]["TemplateURL"]
            child = load_nested(self.root, path)
            self.shimmed[logical_id] = shim(child, moto_supports, values).removed
            in_dependency_order(child)
            children[logical_id] = child
            key = f"{stack}/{path}"
            resource["Properties"]["TemplateURL"] = (
                f"https://{TEMPLATES_BUCKET}.s3.amazonaws.com/{key}")
        self.shimmed[stack] = shim(parent, moto_supports, values).removed
        in_dependency_order(parent)
        export_nested_outputs(parent, children, stack)
        for logical_id, child in children.items():
            key = parent["Resources"][logical_id]["Properties"]["TemplateURL"].split(
                ".amazonaws.com/", 1)[1]
            s3.put_object(Bucket=TEMPLATES_BUCKET, Key=key, Body=json.dumps(child))
        return parent

    def deploy(self, stack: str, transformed: dict[str, Any],
               parameters: dict[str, str]) -> dict[str, Any]:
        """Create or update ``stack`` as ``sam deploy`` would; its description."""
        cloudformation = self.client("cloudformation")
        body = json.dumps(self.prepare(stack, transformed, parameters))
        request = {
            "StackName": stack,
            "TemplateBody": body,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                           for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM",
                             "CAPABILITY_AUTO_EXPAND"],
        }
        existing = [s for s in cloudformation.describe_stacks()["Stacks"]
                    if s["StackName"] == stack]
        if existing:
            cloudformation.update_stack(**request)
        else:
            cloudformation.create_stack(**request)
        return self.describe(stack)

    def describe(self, stack: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        found.update(self.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0])
        return found

    def nested(self, stack: str, logical_id: str) -> str:
        """The physical name of ``stack``'s live nested stack ``logical_id`` (moto replaces
        a nested stack on update and forgets the resource, so it is found by name)."""
        live = [s for s in self.client("cloudformation").describe_stacks()["Stacks"]
                if s["StackName"].startswith(f"{stack}-{logical_id}-")
                and not s["StackStatus"].startswith("DELETE")]
        newest = max(live, key=lambda s: s["CreationTime"])
        return str(newest["StackName"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[str]:
    """A private moto server process on a free loopback port for the block; its endpoint.

    A process of its own: moto keeps its state per process, and an in-process server
    would share it with any other moto the caller runs (the test suite's, for one)."""
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(  # noqa: S310 (http to our own loopback server)
                    f"{endpoint}/moto-api/data.json", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    """Deploy template.yaml into a private moto, first with no worker image, then with one."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--stack", default="offload")
    args = parser.parse_args(argv)
    transformed = transform(args.template)
    with moto_server() as endpoint:
        rehearsal = Rehearsal(endpoint)
        rehearsal.setup()
        ssm = rehearsal.client("ssm")
        ssm.put_parameter(Name="/offload/prod/worker-image-tag", Type="String", Value="none")
        params = {"SesSender": "jobs@example.com", "AlarmEmail": "ops@example.com",
                  "PasswordResetUrlBase": "https://app.example.com/reset?token=",
                  "FetchAllowedHosts": "api.example.com"}
        for step in ("first deploy (no image)", "deploy with an image tag"):
            if step != "first deploy (no image)":
                ssm.put_parameter(Name="/offload/prod/worker-image-tag", Type="String",
                                  Value="rehearsal", Overwrite=True)
            described = rehearsal.deploy(args.stack, transformed, params)
            print(f"{step}: {described['StackStatus']}")
            if not described["StackStatus"].endswith("_COMPLETE"):
                print(described.get("StackStatusReason"), file=sys.stderr)
                return 1
        for stack, removed in rehearsal.shimmed.items():
            kinds = ", ".join(sorted(set(removed.values())))
            print(f"shimmed in {stack}: {len(removed)} ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
