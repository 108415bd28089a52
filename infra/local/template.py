"""Read ``template.yaml`` (SAM) for what the local stack must mirror.

From the template, not from a second list kept here: each function's handler, timeout,
memory and literal environment; the HTTP API's routes and which of them need the JWT
authorizer; the S3 trigger's events and key filter; and every schedule, whether declared as
a SAM ``Schedule``/``ScheduleV2`` function event or as an ``AWS::Events::Rule`` /
``AWS::Scheduler::Schedule`` resource targeting a function.

CloudFormation short tags (``!Ref``, ``!Sub``, ``!GetAtt``...) load as their long forms
(``{"Ref": ...}``, ``{"Fn::Sub": ...}``); values that need a deployed stack to resolve are
skipped, since the local stack sets its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the lock

DEFAULT_TIMEOUT = 3.0  # Lambda's own default
DEFAULT_MEMORY = 128


class TemplateError(ValueError):
    """The template cannot be read, or says something the local stack cannot mirror."""


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader that turns CloudFormation's short tags into their long forms."""


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class FunctionDef:
    """A function as the local Lambda container runs it."""

    logical_id: str
    handler: str
    timeout: float
    memory: int
    environment: dict[str, str]
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def events_of(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.events.items() if v.get("Type") in types}


@dataclass(frozen=True)
class RouteDef:
    """An HTTP API route: ``method`` may be ``ANY``; ``path`` may end in ``{proxy+}``."""

    method: str
    path: str
    function: str
    auth: bool

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class S3Trigger:
    function: str
    events: tuple[str, ...]
    filter_rules: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class ScheduleDef:
    """One schedule: when it fires, which function it invokes, and with what event."""

    name: str  # the job name from Input when there is one, else the logical id
    logical_id: str
    expression: str
    function: str
    input: Any  # None: EventBridge's own "Scheduled Event"; else delivered as is
    enabled: bool
    timezone: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name ``offload fire`` accepts for this schedule."""
        return (self.name, self.logical_id)


@dataclass(frozen=True)
class Template:
    functions: dict[str, FunctionDef]
    routes: tuple[RouteDef, ...]
    s3_triggers: tuple[S3Trigger, ...]
    schedules: tuple[ScheduleDef, ...]

    def schedule(self, name: str) -> ScheduleDef:
        for schedule in self.schedules:
            if name in schedule.names:
                return schedule
        known = ", ".join(s.name for s in self.schedules) or "none"
        raise TemplateError(f"no schedule named {name!r} in the template (known: {known})")


def load_template(path: Path) -> Template:
    """Parse ``path``; TemplateError with the reason when it cannot be read."""
    try:
        document = yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    resources: dict[str, Any] = document["Resources"]
    globals_fn = (document.get("Globals") or {}).get("Function") or {}
    functions = {
        logical_id: _function(logical_id, resource.get("Properties") or {}, globals_fn)
        for logical_id, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function"
    }
    return Template(
        functions=functions,
        routes=tuple(_routes(functions, resources)),
        s3_triggers=tuple(_s3_triggers(functions)),
        schedules=tuple(_function_schedules(functions)) + tuple(_rule_schedules(resources)),
    )


def _function(logical_id: str, props: dict[str, Any], defaults: dict[str, Any]) -> FunctionDef:
    merged = {**defaults, **props}
    handler = merged.get("Handler")
    if not isinstance(handler, str):
        raise TemplateError(f"function {logical_id} has no literal Handler")
    variables = {
        **((defaults.get("Environment") or {}).get("Variables") or {}),
        **((props.get("Environment") or {}).get("Variables") or {}),
    }
    return FunctionDef(
        logical_id=logical_id,
        handler=handler,
        timeout=float(_literal(merged.get("Timeout")) or DEFAULT_TIMEOUT),
        memory=int(_literal(merged.get("MemorySize")) or DEFAULT_MEMORY),
        environment={k: str(v) for k, v in variables.items() if _literal(v) is not None},
        events={k: v for k, v in (props.get("Events") or {}).items() if isinstance(v, dict)},
    )


def _literal(value: Any) -> Any:
    """``value`` when it needs no deployed stack to resolve (not a Ref/Fn:: mapping)."""
    if isinstance(value, dict):
        return None
    return value


def _target_function(arn: Any) -> str | None:
    """The logical id behind ``!GetAtt Fn.Arn`` / ``!Ref Fn`` / ``!Sub ${Fn.Arn}``."""
    if isinstance(arn, dict):
        if "Fn::GetAtt" in arn:
            target = arn["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
        if "Ref" in arn:
            return str(arn["Ref"])
        if "Fn::Sub" in arn and isinstance(arn["Fn::Sub"], str):
            inner = arn["Fn::Sub"]
            if inner.startswith("${") and inner.endswith("}"):
                return inner[2:-1].split(".")[0]
    return None


def _routes(functions: dict[str, FunctionDef], resources: dict[str, Any]) -> list[RouteDef]:
    default_authorizer = {
        api_id: bool(((res.get("Properties") or {}).get("Auth") or {}).get("DefaultAuthorizer"))
        for api_id, res in resources.items()
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::HttpApi"
    }
    implicit_default = any(default_authorizer.values()) if len(default_authorizer) == 1 else False
    routes = []
    for fn in functions.values():
        for event in fn.events_of("HttpApi").values():
            props = event.get("Properties") or {}
            api = _target_function(props.get("ApiId"))
            has_default = default_authorizer.get(api, False) if api else implicit_default
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            auth = authorizer != "NONE" and (bool(authorizer) or has_default)
            path = props.get("Path")
            method = str(props.get("Method") or "ANY").upper()
            routes.append(RouteDef(method if path else "ANY", path or "$default",
                                   fn.logical_id, auth))
    return routes


def _s3_triggers(functions: dict[str, FunctionDef]) -> list[S3Trigger]:
    triggers = []
    for fn in functions.values():
        for event in fn.events_of("S3").values():
            props = event.get("Properties") or {}
            events = props.get("Events") or ["s3:ObjectCreated:*"]
            rules = ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            triggers.append(S3Trigger(
                fn.logical_id,
                tuple([events] if isinstance(events, str) else events),
                tuple({"Name": str(r["Name"]).lower(), "Value": str(r["Value"])} for r in rules),
            ))
    return triggers


def _parse_input(raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, dict) and isinstance(raw.get("Fn::Sub"), str) and "${" not in raw["Fn::Sub"]:
        raw = raw["Fn::Sub"]
    if not isinstance(raw, str):
        raise TemplateError(f"{where}: Input must be a literal JSON string locally")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise TemplateError(f"{where}: Input is not JSON: {exc}") from exc


def _schedule_name(logical_id: str, payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("job"), str):
        return str(payload["job"])
    return logical_id


def _enabled(props: dict[str, Any]) -> bool:
    if props.get("Enabled") is False:
        return False
    return str(props.get("State") or "ENABLED").upper() == "ENABLED"


def _function_schedules(functions: dict[str, FunctionDef]) -> list[ScheduleDef]:
    schedules = []
    for fn in functions.values():
        for event_id, event in fn.events_of("Schedule", "ScheduleV2").items():
            props = event.get("Properties") or {}
            expression = props.get("Schedule") or props.get("ScheduleExpression")
            if not isinstance(expression, str):
                raise TemplateError(f"{fn.logical_id}.{event_id}: no literal schedule expression")
            payload = _parse_input(props.get("Input"), f"{fn.logical_id}.{event_id}")
            schedules.append(ScheduleDef(
                _schedule_name(event_id, payload), event_id, expression, fn.logical_id,
                payload, _enabled(props), props.get("ScheduleExpressionTimezone"),
            ))
    return schedules


def _rule_schedules(resources: dict[str, Any]) -> list[ScheduleDef]:
    schedules = []
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        props = resource.get("Properties") or {}
        kind = resource.get("Type")
        if kind == "AWS::Events::Rule" and isinstance(props.get("ScheduleExpression"), str):
            targets = props.get("Targets") or []
        elif kind == "AWS::Scheduler::Schedule":
            targets = [props.get("Target") or {}]
        else:
            continue
        for target in targets:
            function = _target_function(target.get("Arn"))
            if function is None:
                continue
            payload = _parse_input(target.get("Input"), logical_id)
            schedules.append(ScheduleDef(
                _schedule_name(logical_id, payload), logical_id,
                str(props["ScheduleExpression"]), function, payload, _enabled(props),
                props.get("ScheduleExpressionTimezone"),
            ))
    return schedules
