"""A small HTTP server on 127.0.0.1 for ``fetch_external_data`` to fetch from locally.

The stack allow-lists 127.0.0.1 (``OFFLOAD_FETCH_ALLOWED_HOSTS``) so the job can fetch
these without the internet:

- ``/rates.json``: a small JSON document (the demo fetches it);
- ``/slow?seconds=N``: a response that trickles one byte a second for N seconds (default
  60), so a running job can be watched and aborted.

Run as ``python -m infra.local.fixtures --port N``.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.local.lifeline import exit_on_sigterm, exit_with_parent, say

RATES = {
    "base": "EUR",
    "date": "2026-11-27",
    "rates": {"USD": 1.0573, "GBP": 0.8342, "JPY": 158.21, "CHF": 0.9311},
    "source": "offload local fixtures",
}
MAX_SLOW_SECONDS = 600


class FixtureHandler(BaseHTTPRequestHandler):
    server_version = "offload-local-fixtures"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/rates.json":
            self._send(200, "application/json", json.dumps(RATES, indent=2).encode())
        elif url.path == "/slow":
            self._trickle(parse_qs(url.query).get("seconds", ["60"])[0])
        elif url.path == "/":
            self._send(200, "text/plain", b"/rates.json\n/slow?seconds=N\n")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, raw_seconds: str) -> None:
        try:
            seconds = min(MAX_SLOW_SECONDS, max(1, int(raw_seconds)))
        except ValueError:
            self._send(400, "text/plain", b"seconds must be an integer\n")
            return
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(seconds))
        self.end_headers()
        try:
            for _ in range(seconds):
                self.wfile.write(b".")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            return  # the job was aborted and hung up

    def log_message(self, format: str, *args: Any) -> None:
        say(f"{self.command} {self.path} from {self.client_address[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    exit_on_sigterm()
    exit_with_parent()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), FixtureHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
