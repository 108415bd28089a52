"""A local stand-in for the ECS container agent's task scale-in protection endpoint,
``$ECS_AGENT_URI/task-protection/v1/state``, as AWS documents it and the agent implements it
(``ecs-agent/tmds/handlers/taskprotection/v1``): a PUT of ``{"ProtectionEnabled": bool,
"ExpiresInMinutes": 1..2880}`` answers 200 ``{"protection": {...}}``; a body that is not
that (unknown field, no ``ProtectionEnabled``, minutes out of range) is 400 with
``{"error": {...}}``; a GET answers the current state. Every PUT is recorded. With
``fail=True`` each PUT answers 500 ``{"error": ...}``, as the agent does when ECS fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.integration.procs import reply, serving

STATE_PATH = "/task-protection/v1/state"
TASK_ARN = "arn:aws:ecs:xx-offline-1:000000000000:task/offload-test/0123456789abcdef"
DEFAULT_MINUTES = 120  # the endpoint's default when ExpiresInMinutes is left out


@dataclass(frozen=True)
class Put:
    """One PUT the agent received (``at``: wall-clock seconds)."""

    at: float
    enabled: bool
    minutes: int | None
    status: int


@dataclass
class Agent:
    """What the stand-in agent holds: the task's protection and every PUT."""

    fail: bool = False
    protected: bool = False
    expires_at: float = 0.0
    puts: list[Put] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def is_protected(self) -> bool:
        with self.lock:
            return self.protected and time.time() < self.expires_at

    def accepted(self) -> list[Put]:
        """The PUTs that set the protection (200s), in order."""
        with self.lock:
            return [p for p in self.puts if p.status == 200]

    def answer(self, body: Any) -> tuple[int, dict[str, Any]]:
        """The agent's answer to a PUT with ``body`` (already parsed JSON)."""
        invalid = _invalid(body)
        if invalid:
            return 400, {"error": {"Code": "InvalidParameterException", "Message": invalid}}
        enabled, minutes = body["ProtectionEnabled"], body.get("ExpiresInMinutes")
        with self.lock:
            status = 500 if self.fail else 200
            self.puts.append(Put(time.time(), enabled, minutes, status))
            if self.fail:
                return 500, {"error": {"Arn": TASK_ARN, "Code": "ServerException",
                                       "Message": "Unexpected error occurred"}}
            self.protected = enabled
            self.expires_at = time.time() + 60 * (minutes or DEFAULT_MINUTES) if enabled else 0
            return 200, {"protection": self.protection()}

    def protection(self) -> dict[str, Any]:
        expiry = (datetime.now(UTC) + timedelta(seconds=self.expires_at - time.time())
                  if self.protected else None)
        return {"ExpirationDate": expiry.isoformat() if expiry else None,
                "ProtectionEnabled": self.protected, "TaskArn": TASK_ARN}


def _invalid(body: Any) -> str | None:
    if not isinstance(body, dict) or set(body) - {"ProtectionEnabled", "ExpiresInMinutes"}:
        return "UpdateTaskProtection: failed to decode request"
    if not isinstance(body.get("ProtectionEnabled"), bool):
        return "Invalid request: does not contain 'ProtectionEnabled' field"
    minutes = body.get("ExpiresInMinutes")
    if minutes is not None and (not isinstance(minutes, int) or not 1 <= minutes <= 2880):
        return "expiresInMinutes must be between 1 and 2880"
    return None


def _handler(agent: Agent, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path != path:
                return self._reply(404, {"error": {"Code": "ResourceNotFoundException"}})
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            return self._reply(*agent.answer(body))

        def do_GET(self) -> None:
            if self.path != path:
                return self._reply(404, {"error": {"Code": "ResourceNotFoundException"}})
            with agent.lock:
                return self._reply(200, {"protection": agent.protection()})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            reply(self, status, json.dumps(body).encode(), "application/json")

        def log_message(self, *args: object) -> None:
            return

    return Handler


@contextmanager
def ecs_agent(fail: bool = False) -> Iterator[tuple[str, Agent]]:
    """A stand-in agent on 127.0.0.1: yields the ``ECS_AGENT_URI`` to give a worker (with
    a container id in its path, like the real one) and the agent's state."""
    agent = Agent(fail=fail)
    base = "/api/0123456789abcdef-1234567890"
    with serving(_handler(agent, base + STATE_PATH)) as url:
        yield url + base, agent
