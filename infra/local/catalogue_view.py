"""``offload jobs``: every job of the catalogue, who may enqueue it, and its input fields
with their types, read from the input models' JSON schema (what the API validates)."""

from __future__ import annotations

import json
from typing import Any

from shared.jobs import CATALOGUE, JobSpec

# JSON schema formats, as a person would write the value.
_FORMATS = {
    "date": "date YYYY-MM-DD",
    "date-time": "date-time ISO 8601 with offset",
    "uri": "URL",
}
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
           ("exclusiveMaximum", "<"))


def field_type(schema: dict[str, Any]) -> str:
    """``date YYYY-MM-DD``, ``integer 1..8760``, ``string matching ^[A-Z]{3}$``."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            return field_type({**schema, **kept[0], "anyOf": None})
        return " or ".join(field_type(o) for o in kept)
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    text = _FORMATS.get(str(schema.get("format")), str(schema.get("type", "any")))
    bounds = [f"{sign} {schema[key]}" for key, sign in _BOUNDS if key in schema]
    if bounds:
        text += " " + ", ".join(bounds)
    if "pattern" in schema:
        text += f" matching {schema['pattern']}"
    elif "minLength" in schema or "maxLength" in schema:
        text += f", {schema.get('minLength', 0)}-{schema.get('maxLength', '')} chars"
    return text


def input_fields(spec: JobSpec) -> list[tuple[str, str, bool]]:
    """(name, type, required) of each input field, in the model's order."""
    schema = spec.input_model.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kind = field_type(prop)
        if "default" in prop and prop["default"] is not None:
            kind += f" (default {json.dumps(prop['default'])})"
        fields.append((name, kind, name in required))
    return fields


def who_enqueues(spec: JobSpec, catalogue: dict[str, JobSpec]) -> str:
    if spec.http_enqueueable:
        role = f", role {spec.required_role}" if spec.required_role else ""
        return f"over HTTP (POST /jobs/{spec.name}{role})"
    parents = [s.name for s in catalogue.values() if spec.name in s.steps]
    if parents:
        return f"internal: a step of {', '.join(parents)}"
    return "internal: schedules, S3 events or other jobs"


def render(catalogue: dict[str, JobSpec] | None = None, http_only: bool = False) -> str:
    """The catalogue as text: one block per job."""
    jobs = CATALOGUE if catalogue is None else catalogue
    blocks = []
    # Those a caller can enqueue first.
    for spec in sorted(jobs.values(), key=lambda s: not s.http_enqueueable):
        if http_only and not spec.http_enqueueable:
            continue
        lines = [f"{spec.name}  -  {who_enqueues(spec, jobs)}", f"  {spec.description}"]
        if spec.steps:
            lines.append(f"  steps: {' -> '.join(spec.steps)}")
        fields = input_fields(spec)
        lines += [f"  {name}{'' if req else '?'}: {kind}" for name, kind, req in fields]
        if not fields:
            lines.append("  (no input)")
        lines.append(f"  timeout {spec.timeout_seconds} s, up to {spec.max_tries} tries, "
                     f"priority {spec.priority}")
        blocks.append("\n".join(lines))
    footer = ("Enqueue one with: offload enqueue NAME --data '{\"field\": value}' --wait\n"
              "(a field marked ? is optional)")
    return "\n\n".join([*blocks, footer])
