"""The metadata Offload keeps per job, beside Streaq's task: who owns it, what it is, and
whether its task was published. One JSON string under :meth:`Keys.job`.

It makes ownership checks, idempotency keys, deterministic ids and dead letters work
without MongoDB, and it is written before the task is published, so every process can
tell a job that is being (or failed to be) published from one that ran (docs/QUEUE.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

META_VERSION = 2


def encode_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)


def payload_digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class JobMeta:
    """One job's metadata. ``payload`` is the validated input as a JSON string; ``steps``
    lists a pipeline's step ids (the last one is the job's own id); a step's metadata
    names its ``pipeline``. ``published`` turns true once Streaq holds the task."""

    name: str
    owner: str
    created_ms: int
    payload: str
    digest: str
    ttl_s: int
    correlation_id: str = ""
    priority: str = ""
    run_at_ms: int = 0  # when the job may start (0: at once)
    steps: str = ""
    pipeline: str = ""
    published: bool = False
    # The caller's e-mail and name claims, when the token had them (see
    # ``shared.jobs.PROFILE_CLAIMS``): kept so a replay or repair publishes the same context.
    caller_email: str = ""
    caller_name: str = ""
    # The job this one replays with an edited input (the console's "replay"), if any.
    replay_of: str = ""
    # A pipeline resumed from a failed step runs its steps from this one on.
    first_step: int = 0
    # 2 from the crash-safe enqueue on; 1: written by an earlier version (a job whose
    # task may be in the old binary format, and which was published: it had no other way
    # to be written).
    version: int = META_VERSION

    @classmethod
    def from_json(cls, raw: str) -> JobMeta:
        data = json.loads(raw)
        return cls(name=str(data["name"]), owner=str(data["owner"]),
                   created_ms=int(data.get("created_ms") or 0),
                   payload=str(data.get("payload") or "{}"), digest=str(data.get("digest", "")),
                   ttl_s=int(data.get("ttl_s") or 0),
                   correlation_id=str(data.get("correlation_id") or ""),
                   priority=str(data.get("priority") or ""),
                   run_at_ms=int(data.get("run_at_ms") or 0),
                   steps=str(data.get("steps") or ""), pipeline=str(data.get("pipeline") or ""),
                   published=bool(data.get("published", True)),
                   caller_email=str(data.get("caller_email") or ""),
                   caller_name=str(data.get("caller_name") or ""),
                   replay_of=str(data.get("replay_of") or ""),
                   first_step=int(data.get("first_step") or 0),
                   version=int(data.get("version") or 1))

    @property
    def data(self) -> dict[str, Any]:
        """The validated input."""
        value: dict[str, Any] = json.loads(self.payload)
        return value

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # flat fields: no need for asdict's deep copy

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps.split(",") if s)

    def for_step(self, name: str, pipeline_id: str) -> JobMeta:
        """The metadata of one of this pipeline's steps (same owner, payload, context).
        A step's publication is its pipeline's: it is published with the whole chain."""
        return replace(self, name=name, steps="", pipeline=pipeline_id, published=True)

    @property
    def profile(self) -> dict[str, str]:
        """The caller's profile claims, as :func:`shared.jobs.job_context` takes them."""
        return {"email": self.caller_email, "name": self.caller_name}

    def marked_published(self) -> JobMeta:
        return replace(self, published=True)

    def same_job(self, other: JobMeta) -> bool:
        """Whether ``other`` asks for the same job (name and payload) as this one."""
        return self.name == other.name and self.digest == other.digest
