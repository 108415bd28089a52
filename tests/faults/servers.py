"""Servers a fault test controls: a redis-server it may stop and start again with its
data, and a TCP proxy that can stop forwarding without closing anything."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

from infra.local.private_redis import RedisServer


class PersistentRedis(RedisServer):
    """A private redis-server with an append-only file fsynced on every write, restarted
    on the same port and directory: a restart that keeps the data (ElastiCache has no such
    file; there the replica wait keeps accepted jobs, tests/faults/test_failover.py).
    With ``password``, clients must AUTH (as ElastiCache with AUTH on)."""

    def __init__(self, password: str | None = None) -> None:
        super().__init__()
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH"
        auth = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir,
             "--loglevel", "warning", *auth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def answers(self) -> bool:
        """PING answered with PONG (not LOADING) within 0.2 s."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    if not s.recv(64).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class SilentProxy:
    """Forwards 127.0.0.1:<port> to a target, until :meth:`go_silent`.

    Silent: every open connection stays open but nothing more is forwarded either way,
    and new connections are accepted and treated the same, like a stalled node or a
    black-holed route. :meth:`heal` forwards new connections again; the silenced ones
    stay silent for good (their path is gone, as after a failover).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._silent = False
        self._generation = 0
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def go_silent(self) -> None:
        with self._lock:
            self._silent = True
            self._generation += 1

    def heal(self) -> None:
        with self._lock:
            self._silent = False

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                generation, silent = self._generation, self._silent
                self._sockets.append(client)
            if silent:
                continue  # accepted, never answered
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, generation),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, generation: int) -> None:
        src.settimeout(0.1)
        while not self._closed.is_set():
            if self._generation != generation:
                time.sleep(0.1)  # silenced: hold everything, close nothing
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                dst.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                return


class FlakyS3:
    """An HTTP proxy in front of moto's S3 that answers ``503 SlowDown`` to the first
    ``failures`` requests whose path contains ``match``, and forwards everything else."""

    def __init__(self, target: str, match: str, failures: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target_port = urlsplit(target).port
        state = self
        self.refused = 0
        self.forwarded = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with state._lock:
                    refuse = match in self.path and state.refused < failures
                    if refuse:
                        state.refused += 1
                    else:
                        state.forwarded += 1
                if refuse:
                    self._answer(503, {"content-type": "application/xml"}, SLOW_DOWN)
                    return
                import http.client

                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["host"] = f"127.0.0.1:{target_port}"
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                keep = {k: v for k, v in response.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection",
                                             "content-length")}
                upstream.close()
                self._answer(response.status, keep, data)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
