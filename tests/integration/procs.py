"""Helpers to run real ``offload worker`` processes and small HTTP servers in tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shared.config import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process see ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, tuple | list):
            import json

            value = json.dumps(list(value))
        env[f"OFFLOAD_{name.upper()}"] = str(value)
    env.update(extra)
    return env


async def _not_fetching(settings: Settings, worker_ids: set[str]) -> set[str]:
    """Which of ``worker_ids`` have not started fetching yet: Streaq's worker heartbeat,
    written once its fetch loop runs (key built from Streaq's public prefix and constant;
    only this test helper reads it, production health is ``offload worker-health``)."""
    from streaq.constants import REDIS_HEALTH

    from shared.queue import make_streaq

    client = make_streaq(settings)
    async with client:
        return {i for i in worker_ids
                if not await client.redis.exists([f"{client.prefix}{REDIS_HEALTH}:{i}"])}


class WorkerProcess:
    """``offload worker`` as a child process with its own state dir."""

    def __init__(self, settings: Settings, state_dir: Path, *args: str, **env: str) -> None:
        self.state_dir = state_dir
        self.log = state_dir / "worker.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "offload.cli", "worker", "--state-dir", str(state_dir), *args],
            env=settings_env(settings, **env),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, settings: Settings, timeout: float = 20) -> None:
        """Wait until ``offload worker-health`` passes and every worker process of this
        state dir is fetching (a consumer of the queue's stream group)."""
        from worker.runner import check_health

        deadline = time.monotonic() + timeout
        message = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output()}")
            # In a thread: the checks run their own event loop, and tests calling this may
            # be inside one already.
            with ThreadPoolExecutor(1) as pool:
                ok, message = pool.submit(check_health, settings, self.state_dir).result()
                if ok:
                    ids = {p.read_text().strip() for p in self.state_dir.glob("*.id")}
                    missing = pool.submit(asyncio.run, _not_fetching(settings, ids)).result()
                    ok, message = not missing, f"not fetching yet: {sorted(missing)}"
            if ok:
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s ({message}):\n{self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


class SlowHandler(BaseHTTPRequestHandler):
    """Answers GET /slow/<seconds> after sleeping that long; counts requests per path."""

    hits: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.hits[self.path] = self.hits.get(self.path, 0) + 1
        seconds = float(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/slow/") else 0
        time.sleep(seconds)
        reply(self, 200, f"slept {seconds}s for {self.path}\n".encode(), "text/plain")

    def log_message(self, *args: object) -> None:
        return


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free 127.0.0.1 port from a thread for the block; its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    """Answer ``handler``'s request with ``body``."""
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def slow_server() -> Iterator[tuple[str, type[SlowHandler]]]:
    """A local HTTP server on 127.0.0.1 (allow-listed in the test settings)."""
    handler = type("Handler", (SlowHandler,), {"hits": {}, "lock": threading.Lock()})
    with serving(handler) as url:
        yield url, handler
