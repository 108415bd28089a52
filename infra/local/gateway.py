"""The local API Gateway (HTTP API): HTTP in, payload 2.0 events to the API's Lambda.

Run as ``python -m infra.local.gateway --config PATH`` (a JSON :class:`GatewayConfig`;
a file, because it holds the dev tokens). It does what the deployed gateway does before and
after the handler: matches the request to a route from the template (``routeKey``,
``pathParameters``), runs the JWT authorizer where the route has one (here: a local bearer
token mapped to its claims; anything else is a 401 ``{"message":"Unauthorized"}``), builds
the event, invokes a local Lambda container, and turns the handler's result into the HTTP
response (payload 2.0 rules: a result without ``statusCode`` is a 200 JSON body).

Each function has a pool of containers; a request takes an idle one (Lambda's concurrency)
and waits for one up to the integration timeout when all are busy.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import re
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infra.local.events import HttpRequest, http_api_event
from infra.local.lambda_container import invoke
from infra.local.lifeline import exit_on_sigterm, exit_with_parent, say
from infra.local.template import RouteDef

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT = 30.0  # HTTP API's maximum


def match_route(route: RouteDef, method: str, path: str) -> dict[str, str] | None:
    """Path parameters when ``route`` takes the request, else None."""
    if route.method not in ("ANY", method):
        return None
    if route.path == "$default":
        return {}
    pattern = "^"
    for part in re.split(r"(\{[^}]+\})", route.path):
        if part.startswith("{") and part.endswith("+}"):
            pattern += f"(?P<{_group(part[1:-2])}>.+)"
        elif part.startswith("{"):
            pattern += f"(?P<{_group(part[1:-1])}>[^/]+)"
        else:
            pattern += re.escape(part)
    found = re.match(pattern + "$", path)
    if found is None:
        return None
    names = re.findall(r"\{([^}+]+)\+?\}", route.path)
    return {name: found.group(_group(name)) for name in names}


def route_specificity(route: RouteDef) -> tuple[bool, bool, int, bool]:
    """API Gateway prefers exact paths, then more literal segments, then a named method."""
    variables = route.path.count("{")
    literal = len([p for p in route.path.split("/") if p and not p.startswith("{")])
    return (route.path == "$default", "+}" in route.path, variables - literal,
            route.method == "ANY")


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


@dataclass
class GatewayConfig:
    port: int
    routes: list[RouteDef]
    # bearer token -> JWT claims (strings, as the authorizer passes them)
    tokens: dict[str, dict[str, str]]
    # function logical id -> invoke URLs of its containers, and its timeout
    pools: dict[str, list[str]]
    timeouts: dict[str, float] = field(default_factory=dict)
    # moto's endpoint, for the console's local inbox (/_dev/mail); "" turns /_dev/* off
    aws_endpoint_url: str = ""
    # Log successful reads (GET/HEAD < 400) too; off, polling leaves the log alone.
    log_reads: bool = True

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        data = json.loads(path.read_text())
        data["routes"] = [RouteDef(**r) for r in data["routes"]]
        return cls(**data)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _message(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps({"message": text}).encode()
    return Reply(status, [("content-type", "application/json"), *(extra or [])], body)


def lambda_result_to_reply(result: Any) -> Reply:
    """Payload 2.0 response rules: ``statusCode`` present, or a 200 JSON body."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return Reply(200, [("content-type", "application/json")], json.dumps(result).encode())
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(key), str(v)) for v in values]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode()
    if not any(k.lower() == "content-type" for k, _ in headers) and body:
        headers.append(("content-type", "application/json"))
    return Reply(int(result["statusCode"]), headers, body)


DEV_PREFIX = "/_dev/"


def _json(status: int, body: Any) -> Reply:
    return Reply(status, [("content-type", "application/json"), ("cache-control", "no-store")],
                 json.dumps(body).encode())


def dev_user(token: str, claims: dict[str, str]) -> dict[str, Any]:
    groups = claims.get("cognito:groups", "")
    roles = groups.strip("[]").split() if isinstance(groups, str) else list(groups)
    return {"sub": claims.get("sub", ""), "name": claims.get("name", ""),
            "email": claims.get("email", ""), "token": token, "roles": roles}


def sent_mail(aws_endpoint_url: str) -> list[dict[str, Any]]:
    """What moto's SES accepted, newest first: recipients, subject, text."""
    url = f"{aws_endpoint_url.rstrip('/')}/moto-api/data.json"
    if not url.startswith("http://127.0.0.1:"):
        return []
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback moto only
        messages = json.load(response).get("ses", {}).get("Message", [])
    out = []
    for m in messages:
        destinations = m.get("destinations") or {}
        out.append({"to": destinations.get("ToAddresses", []), "subject": m.get("subject", ""),
                    "text": m.get("body", ""), "id": m.get("id", "")})
    return out[::-1]


class Gateway:
    """Routing, authorisation and invocation; the HTTP plumbing lives in the handler."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.routes = sorted(config.routes, key=route_specificity)
        self.pools: dict[str, queue.Queue[str]] = {}
        for function, urls in config.pools.items():
            pool: queue.Queue[str] = queue.Queue()
            for url in urls:
                pool.put(url)
            self.pools[function] = pool

    def route(self, method: str, path: str) -> tuple[RouteDef, dict[str, str]] | None:
        for route in self.routes:
            params = match_route(route, method, path)
            if params is not None:
                return route, params
        return None

    def authorise(self, route: RouteDef, headers: list[tuple[str, str]]) -> dict[str, str] | None:
        """The caller's claims; {} for an open route; None when the authorizer refuses."""
        if not route.auth:
            return {}
        value = next((v for k, v in headers if k.lower() == "authorization"), "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.config.tokens.get(token.strip())

    def handle(self, request: HttpRequest, host: str) -> tuple[Reply, str]:
        """The response, and who asked (for the access log)."""
        if request.raw_path.startswith(DEV_PREFIX) and self.config.aws_endpoint_url:
            return self.dev(request.method, request.raw_path), "-"
        found = self.route(request.method, request.raw_path)
        if found is None:
            return _message(404, "Not Found"), "-"
        route, params = found
        claims = self.authorise(route, request.headers)
        if claims is None:
            return _message(401, "Unauthorized", [("www-authenticate", "Bearer")]), "-"
        event = http_api_event(request, route.route_key, params, claims if route.auth else None,
                               host)
        return self.invoke(route.function, event), claims.get("sub", "-")

    def dev(self, method: str, path: str) -> Reply:
        """The local stack's own routes for the console: its users (with their tokens,
        which only this loopback gateway accepts) and the e-mails moto's SES accepted."""
        if method != "GET":
            return _message(405, "Method Not Allowed")
        if path == f"{DEV_PREFIX}users":
            users = [dev_user(token, claims) for token, claims in self.config.tokens.items()]
            return _json(200, users)
        if path == f"{DEV_PREFIX}mail":
            return _json(200, sent_mail(self.config.aws_endpoint_url))
        return _message(404, "Not Found")

    def invoke(self, function: str, event: dict[str, Any]) -> Reply:
        pool = self.pools.get(function)
        if pool is None:
            return _message(500, "Internal Server Error")
        try:
            url = pool.get(timeout=INTEGRATION_TIMEOUT)
        except queue.Empty:
            return _message(503, "Service Unavailable")
        try:
            return self._call(url, event, self.config.timeouts.get(function, 30.0))
        finally:
            pool.put(url)

    def _call(self, url: str, event: dict[str, Any], timeout: float) -> Reply:
        result = invoke(url, event, timeout, retry_for=timeout)
        if result.unreachable:
            return _message(503, "Service Unavailable")
        if not result.ok:
            return _message(500, "Internal Server Error")
        return lambda_result_to_reply(result.payload)


def should_log(method: str, status: int, log_reads: bool) -> bool:
    """Whether a request gets an access line: every write (an enqueue, an abort, an
    upload) and every error, and successful reads only when ``log_reads``."""
    return log_reads or method not in ("GET", "HEAD") or status >= 400


class BadRequest(ValueError):
    """The request's framing (Content-Length, chunk sizes) cannot be read."""


class GatewayServer(ThreadingHTTPServer):
    """The gateway's HTTP server: its handlers answer with :attr:`gateway`."""

    daemon_threads = True

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(("127.0.0.1", gateway.config.port), GatewayHandler)


class GatewayHandler(BaseHTTPRequestHandler):
    """One HTTP request: read it, let the gateway answer, write the reply, log one line."""

    protocol_version = "HTTP/1.1"
    server_version = "offload-local-gateway"
    server: GatewayServer

    def _serve(self) -> None:
        started = time.monotonic()
        reply, who = self._answer()
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        self.send_header("content-length", str(len(reply.body)))
        self.send_header("apigw-requestid", f"{time.time_ns():x}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        elapsed = (time.monotonic() - started) * 1000
        if should_log(self.command, reply.status, self.server.gateway.config.log_reads):
            say(f"{self.command} {self.path} {reply.status} {elapsed:.0f}ms sub={who}")

    def _answer(self) -> tuple[Reply, str]:
        """The reply and who asked; the connection closes after a body it could not read."""
        gateway = self.server.gateway
        try:
            body = self._read_body()
        except BadRequest:
            self.close_connection = True
            return _message(400, "Bad Request"), "-"
        if body is None:
            self.close_connection = True
            return _message(413, "Request Entity Too Large"), "-"
        path, _, query = self.path.partition("?")
        request = HttpRequest(self.command, path, query, list(self.headers.items()),
                              body, self.client_address[0], self.request_version)
        host = self.headers.get("host") or f"127.0.0.1:{gateway.config.port}"
        return gateway.handle(request, host)

    def _read_body(self) -> bytes | None:
        """The body; None when it is over the payload limit."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = _size(self.headers.get("content-length") or "0", 10)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        data = b""
        while True:
            size = _size(self.rfile.readline().split(b";")[0].strip().decode("latin-1") or "0",
                         16)
            if size == 0:
                self.rfile.readline()
                return data
            if len(data) + size > MAX_BODY_BYTES:
                return None
            data += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return  # one access line per request is printed by _serve


def _size(text: str, base: int) -> int:
    """A Content-Length (base 10) or chunk size (base 16); BadRequest when it is not one."""
    try:
        size = int(text, base)
    except ValueError:
        raise BadRequest(f"not a size: {text!r:.40}") from None
    if size < 0:
        raise BadRequest(f"negative size: {size}")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args()
    exit_on_sigterm()
    exit_with_parent()
    server = GatewayServer(Gateway(GatewayConfig.load(args.config)))
    server.serve_forever()


if __name__ == "__main__":
    main()
