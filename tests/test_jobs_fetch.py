"""fetch_external_data through the queue, against a local HTTP server on 127.0.0.1.

The allow-list names the IP literal ``127.0.0.1`` (an operator's explicit choice lets a
listed literal be private); names resolving to loopback are refused like any private target.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from infra.local.testing import s3_objects
from shared.aws import s3_client
from shared.config import Settings
from shared.hosts import host_allowed, is_public_address
from shared.models import Blob
from worker.tasks.fetch import Target, send_pinned

MAX_BYTES = 1000
TIMEOUT_SECONDS = 1.5


class Handler(BaseHTTPRequestHandler):
    """Routes by path; ``server.hits`` counts requests per path (for "fails once" routes)."""

    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        hits = self.server.hit(self.path)
        port = self.server.server_address[1]
        routes: dict[str, Callable[[], None]] = {
            "/data": lambda: self.reply(200, b"hello, offload", "text/plain; charset=utf-8"),
            "/flaky": lambda: self.reply(503, b"busy") if hits == 1 else self.reply(
                200, b"second time lucky", "text/plain"),
            "/slow-once": lambda: self.slow(hits),
            "/missing": lambda: self.reply(404, b"no"),
            "/hop": lambda: self.redirect("/data"),
            "/loop": lambda: self.redirect("/loop"),
            "/away": lambda: self.redirect(f"http://localhost:{port}/data"),
            "/big": lambda: self.reply(200, b"x" * (MAX_BYTES + 1), "text/plain"),
            "/big-unsized": self.unsized,
            "/host": lambda: self.reply(200, self.headers["Host"].encode(), "text/plain"),
        }
        routes.get(self.path, lambda: self.reply(404, b"no route"))()

    def reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def slow(self, hits: int) -> None:
        if hits == 1:
            time.sleep(TIMEOUT_SECONDS + 1)
        self.reply(200, b"worth the wait")

    def unsized(self) -> None:
        # No Content-Length (HTTP/1.0: the body ends when the connection closes), so only
        # counting the streamed bytes can stop it.
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        for _ in range(50):
            self.wfile.write(b"y" * 100)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def hit(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def allowed_hosts() -> tuple[str, ...]:
    return ("127.0.0.1",)


@pytest.fixture
def settings(settings: Settings, allowed_hosts: tuple[str, ...]) -> Settings:
    return settings.model_copy(update={
        "fetch_allowed_hosts": allowed_hosts,
        "fetch_max_bytes": MAX_BYTES,
        "fetch_timeout_seconds": TIMEOUT_SECONDS,
    })


def url(server: Server, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


async def fetch(queue: Any, target: str) -> Any:
    job = await queue.enqueue("fetch_external_data", {"url": target}, owner="u1")
    return await queue.wait(job.id, "u1", timeout=30)


@pytest.mark.anyio
async def test_fetch_stores_the_body_as_a_blob(
    worker: Any, queue: Any, settings: Settings, http_server: Server
) -> None:
    target = url(http_server, "/data")
    view = await fetch(queue, target)
    assert view.status == "done", view.error
    body = b"hello, offload"
    key = "fetched/u1/" + hashlib.sha256(target.encode()).hexdigest()
    assert view.result == {
        "url": target, "final_url": target, "status": 200, "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(), "bucket": settings.results_bucket,
        "key": key, "content_type": "text/plain; charset=utf-8",
        "file": {"$type": "offload.blob", "name": "body", "bucket": settings.results_bucket,
                 "key": key, "content_type": "text/plain; charset=utf-8", "bytes": len(body)},
    }
    assert s3_objects(settings, key) == {key: body}
    stored = s3_client(settings).head_object(Bucket=settings.results_bucket, Key=key)
    assert stored["ContentType"] == "text/plain; charset=utf-8"
    blob = await Blob.find_one(Blob.key == key)
    assert blob is not None
    assert blob.status == "uploaded"
    assert blob.kind == "fetched"


@pytest.mark.anyio
async def test_the_request_keeps_the_url_host_in_its_host_header(
    worker: Any, queue: Any, http_server: Server
) -> None:
    # The connection goes to the vetted address; the Host header still names the URL's host.
    view = await fetch(queue, url(http_server, "/host"))
    assert view.status == "done", view.error
    assert view.result["size"] == len(f"127.0.0.1:{http_server.server_address[1]}")


@pytest.mark.anyio
async def test_a_503_is_retried_and_then_succeeds(
    worker: Any, queue: Any, http_server: Server
) -> None:
    view = await fetch(queue, url(http_server, "/flaky"))
    assert view.status == "done", view.error
    assert view.tries == 2
    assert view.result["size"] == len(b"second time lucky")
    assert http_server.hits["/flaky"] == 2


@pytest.mark.anyio
async def test_a_timeout_is_transient(worker: Any, queue: Any, http_server: Server) -> None:
    view = await fetch(queue, url(http_server, "/slow-once"))
    assert view.status == "done", view.error
    assert view.tries == 2


@pytest.mark.anyio
async def test_a_404_fails_at_once_and_is_a_dead_letter(
    worker: Any, queue: Any, http_server: Server
) -> None:
    target = url(http_server, "/missing")
    view = await fetch(queue, target)
    assert view.status == "failed"
    assert view.error == {"type": "PermanentJobError", "message": f"{target} answered 404"}
    assert view.tries == 1
    [letter] = [d for d in await queue.dead_letters("u1") if d.payload == {"url": target}]
    assert letter.tries == 1
    assert http_server.hits["/missing"] == 1


@pytest.mark.anyio
async def test_a_redirect_to_an_allowed_host_is_followed(
    worker: Any, queue: Any, http_server: Server
) -> None:
    view = await fetch(queue, url(http_server, "/hop"))
    assert view.status == "done", view.error
    assert view.result["final_url"] == url(http_server, "/data")
    assert view.result["size"] == len(b"hello, offload")


@pytest.mark.anyio
async def test_a_redirect_to_a_host_not_allowed_is_refused(
    worker: Any, queue: Any, http_server: Server
) -> None:
    view = await fetch(queue, url(http_server, "/away"))
    assert view.status == "failed"
    assert view.error == {"type": "FetchRefused",
                          "message": "host 'localhost' is not in the fetch allow-list"}
    assert view.tries == 1
    assert http_server.hits["/data"] == 0


@pytest.mark.anyio
async def test_redirects_stop_after_five(worker: Any, queue: Any, http_server: Server) -> None:
    view = await fetch(queue, url(http_server, "/loop"))
    assert view.status == "failed"
    assert view.error == {"type": "PermanentJobError", "message": "more than 5 redirects"}
    assert http_server.hits["/loop"] == 6


@pytest.mark.anyio
async def test_a_name_resolving_to_loopback_is_refused_unless_listed(
    worker: Any, queue: Any, http_server: Server
) -> None:
    view = await fetch(queue, url(http_server, "/data", host="localhost"))
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "FetchRefused"
    assert "not in the fetch allow-list" in view.error["message"]
    assert http_server.hits["/data"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("allowed_hosts", [("127.0.0.1", "localhost")])
@pytest.mark.parametrize("how", ["direct", "redirect"])
async def test_a_listed_name_resolving_to_loopback_is_refused_after_dns(
    worker: Any, queue: Any, http_server: Server, how: str
) -> None:
    # Listing a name does not make its private addresses fetchable (DNS may change).
    target = url(http_server, "/data", host="localhost") if how == "direct" else url(
        http_server, "/away")
    view = await fetch(queue, target)
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "FetchRefused"
    assert view.error["message"].startswith("localhost resolves to a non-public address")
    assert "127.0.0.1" in view.error["message"]
    assert http_server.hits["/data"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("allowed_hosts", [()])
async def test_an_empty_allow_list_fetches_nothing(
    worker: Any, queue: Any, http_server: Server
) -> None:
    view = await fetch(queue, url(http_server, "/data"))
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["message"] == "fetching is disabled: OFFLOAD_FETCH_ALLOWED_HOSTS is empty"
    assert http_server.hits["/data"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
async def test_a_body_over_the_limit_is_refused(
    worker: Any, queue: Any, settings: Settings, http_server: Server, path: str
) -> None:
    target = url(http_server, path)
    view = await fetch(queue, target)
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "FetchTooLarge"
    assert view.tries == 1
    key = "fetched/u1/" + hashlib.sha256(target.encode()).hexdigest()
    assert await Blob.find_one(Blob.key == key) is None


@pytest.mark.anyio
async def test_the_connection_goes_to_the_vetted_address_not_a_new_lookup(
    http_server: Server,
) -> None:
    # GIVEN a vetted target whose name no resolver knows, pinned to the server's address
    port = http_server.server_address[1]
    target = Target(httpx.URL(f"http://pinned.invalid:{port}/host"), "pinned.invalid",
                    ("127.0.0.1",))
    # WHEN it is fetched
    async with httpx.AsyncClient(follow_redirects=False) as client:
        response = await send_pinned(client, target, 5.0)
        body = await response.aread()
        await response.aclose()
    # THEN it reached the pinned address without resolving the name, and kept the name
    assert response.status_code == 200
    assert body == f"pinned.invalid:{port}".encode()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", True),  # exact
        ("API.Example.COM.", True),  # case and trailing dot do not matter
        ("data.example.org", True),  # wildcard subdomain
        ("deep.data.example.org", True),
        ("example.org", False),  # the wildcard is for subdomains only
        ("evilexample.org", False),
        ("example.org.evil.net", False),
        ("api.example.com.evil.net", False),
        ("10.0.0.1", True),  # a listed IP literal
        ("10.0.0.2", False),
        ("bücher.example.org", True),  # IDNA-encoded before matching
    ],
)
def test_host_allow_list_matching(host: str, expected: bool) -> None:
    allowed = ("api.example.com", "*.example.org", "10.0.0.1")
    assert host_allowed(host, allowed) is expected


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True), ("2606:4700::6810:85e5", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False),
        ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
        ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False),
        ("255.255.255.255", False), ("::1", False), ("fe80::1", False), ("fc00::1", False),
        ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False), ("ff02::1", False),
    ],
)
def test_only_public_addresses_pass(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
