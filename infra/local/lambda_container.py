"""One local Lambda execution environment: a handler, one invocation at a time.

Run as ``python -m infra.local.lambda_container --name api --handler functions.api.lambda_handler
--port N --timeout 29``. The handler module is imported once (the init phase) before the port
opens; invocations arrive as Lambda's Invoke API does them
(``POST /2015-03-31/functions/function/invocations``, the event as the body; a handler
exception comes back as 200 with ``X-Amz-Function-Error: Unhandled`` and
``{"errorMessage", "errorType", "stackTrace"}``).

Every invocation runs on the same dedicated thread, one after another, like a Lambda
container: the handler's event loop and clients are never touched by a second thread. An
invocation that outlives the timeout is answered with Lambda's timeout error and the process
exits, as Lambda discards a timed-out environment; the supervisor starts a fresh one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import queue
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from infra.local.lifeline import exit_on_sigterm, exit_with_parent, say

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
ACCOUNT_ID = "123456789012"
Handler = Callable[[Any, Any], Any]


@dataclass
class LocalContext:
    """The Lambda context object's documented attributes."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    region: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{os.getpid()}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    event: Any
    context: LocalContext
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: dict[str, Any] | None = None


def load_handler(path: str) -> Handler:
    """``package.module.function`` (SAM's ``Handler``) as a callable."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"handler must be module.function, got {path!r}")
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def describe_error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[1:],
        "requestId": "",
    }


class Container:
    """The handler plus the one thread that ever calls it."""

    def __init__(self, name: str, handler: Handler, timeout: float, memory: int,
                 region: str) -> None:
        self.name, self.handler, self.timeout = name, handler, timeout
        self.memory, self.region = memory, region
        self._inbox: queue.Queue[Invocation] = queue.Queue()
        threading.Thread(target=self._run, daemon=True, name="invoke").start()

    def _run(self) -> None:
        while True:
            job = self._inbox.get()
            try:
                job.result = self.handler(job.event, job.context)
                json.dumps(job.result)  # Lambda must serialise what the handler returns
            except Exception as exc:
                job.error = describe_error(exc)
                job.error["requestId"] = job.context.aws_request_id
                say(f"[ERROR] {job.error['errorType']}: {job.error['errorMessage']}\n"
                    + "".join(job.error["stackTrace"]).rstrip())
            job.done.set()

    def invoke(self, event: Any) -> Invocation:
        job = Invocation(event, LocalContext(self.name, self.memory, self.timeout, self.region))
        self._inbox.put(job)
        if not job.done.wait(self.timeout):
            job.error = {
                "errorMessage": f"Task timed out after {self.timeout:.2f} seconds",
                "errorType": "Sandbox.Timedout",
                "requestId": job.context.aws_request_id,
            }
        return job


@dataclass(frozen=True)
class InvokeResult:
    """An invocation as the caller saw it: ``ok`` is False for a handler error."""

    ok: bool
    payload: Any
    millis: float
    unreachable: bool = False  # no container answered at all


def invoke(url: str, event: Any, timeout: float, retry_for: float = 0.0) -> InvokeResult:
    """Invoke the container at ``url`` (Lambda's Invoke API) and wait for its answer.

    Connection failures are retried for ``retry_for`` seconds: a container that crashed or
    timed out is being replaced, as Lambda starts a new environment.
    """
    started = time.monotonic()
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"local containers listen on 127.0.0.1, not {url!r}")
    request = urllib.request.Request(  # noqa: S310 (checked above: http to loopback only)
        url + INVOKE_PATH, data=json.dumps(event).encode(), method="POST",
        headers={"content-type": "application/json"},
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout + 2) as response:  # noqa: S310
                failed = bool(response.headers.get("X-Amz-Function-Error"))
                payload = json.loads(response.read() or b"null")
            return InvokeResult(not failed, payload, _since(started))
        except (ConnectionError, urllib.error.URLError) as exc:
            timed_out = "timed out" in str(exc)
            if timed_out or time.monotonic() - started > retry_for:
                return InvokeResult(False, {"errorType": type(exc).__name__,
                                            "errorMessage": str(exc)},
                                    _since(started), unreachable=True)
            time.sleep(0.2)
        except (TimeoutError, ValueError) as exc:
            return InvokeResult(False, {"errorType": type(exc).__name__,
                                        "errorMessage": str(exc)},
                                _since(started), unreachable=True)


def _since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def make_http_handler(container: Container) -> type[BaseHTTPRequestHandler]:
    class InvokeHandler(BaseHTTPRequestHandler):
        # HTTP/1.0 (the default) closes each connection after its response, so no caller
        # can hold this one-request-at-a-time server with an idle keep-alive connection.

        def do_POST(self) -> None:
            if self.path.split("?")[0] != INVOKE_PATH:
                self._reply(404, {"message": "unknown path"})
                return
            length = int(self.headers.get("content-length") or 0)
            try:
                event = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._reply(400, {"errorType": "InvalidRequestContentException",
                                  "errorMessage": "the event is not JSON"})
                return
            job = container.invoke(event)
            if job.error is None:
                self._reply(200, job.result)
                return
            self._reply(200, job.error, {"X-Amz-Function-Error": "Unhandled"})
            if job.error["errorType"] == "Sandbox.Timedout":
                say(f"[ERROR] {job.error['errorMessage']}: discarding this environment")
                os._exit(1)  # the handler thread is stuck: a new container replaces us

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            return  # the gateway and the triggers log each invocation

    return InvokeHandler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="the function's name (logs, ARN)")
    parser.add_argument("--handler", required=True, help="module.function")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--memory", type=int, default=512)
    args = parser.parse_args()
    exit_on_sigterm()
    exit_with_parent()
    handler = load_handler(args.handler)  # the init phase: import errors end us here
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"
    container = Container(args.name, handler, args.timeout, args.memory, region)
    # HTTPServer (not the threading one) answers one request at a time: Lambda's
    # one-invocation-per-environment, with later requests waiting in the listen backlog.
    server = HTTPServer(("127.0.0.1", args.port), make_http_handler(container))
    server.serve_forever()


if __name__ == "__main__":
    main()
