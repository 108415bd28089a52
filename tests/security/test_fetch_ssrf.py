"""``fetch_external_data`` refuses private, loopback and link-local addresses: as literals,
as DNS names that resolve to them (answers supplied by a stub resolver, since this machine
has no DNS beyond /etc/hosts), and behind redirects from an allowed server (a real worker
fetching from a local HTTP server that redirects). tests/test_jobs_fetch.py covers the
allow-list matching and the pinning of the vetted address."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from shared.config import Settings
from shared.jobs import FetchExternalInput
from tests.faults.figures import record
from worker.tasks.fetch import FetchRefused, vet

pytestmark = pytest.mark.anyio

NON_PUBLIC = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "169.254.170.2", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "fd00:ec2::254",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::", "64:ff9b::a9fe:a9fe",
]
WILDCARD = ("*.example.com",)


def answers(addresses: list[str]) -> Any:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]

    return getaddrinfo


@pytest.mark.parametrize("address", NON_PUBLIC)
async def test_a_name_resolving_to_a_non_public_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(anyio, "getaddrinfo", answers(["93.184.215.14", address]))
    with pytest.raises(FetchRefused, match="resolves to a non-public address"):
        await vet(httpx.URL("https://files.example.com/report.csv"), WILDCARD)


@pytest.mark.parametrize("address", NON_PUBLIC)
async def test_a_non_public_literal_is_refused_unless_listed_exactly(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchRefused):
        await vet(httpx.URL(f"http://{host}/latest/meta-data/"), (*WILDCARD, "*.0.0.1"))


@pytest.mark.parametrize("url", [
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/",
    "http://localhost/", "http://LOCALHOST./", "http://files.example.com.evil.net/",
    "http://files.example.com@127.0.0.1/", "file:///etc/passwd", "gopher://127.0.0.1/",
])
async def test_odd_spellings_of_local_targets_are_refused(url: str) -> None:
    # The job sees its input as the catalogue model parsed it (WHATWG rules: the numeric
    # spellings become 127.0.0.1); what the model refuses fails for good before any fetch.
    try:
        parsed = FetchExternalInput.model_validate({"url": url}).url
    except ValidationError:
        return
    with pytest.raises(FetchRefused):
        await vet(httpx.URL(str(parsed)), WILDCARD)


class Redirector(BaseHTTPRequestHandler):
    """``/to?<url>`` redirects there; counts every request."""

    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(302)
        self.send_header("location", self.path.split("?", 1)[1])
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def redirector() -> Iterator[tuple[str, type[Redirector]]]:
    handler = type("R", (Redirector,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # 127.0.0.1 listed exactly (the redirector), and the names a redirect may try.
    return settings.model_copy(update={"fetch_allowed_hosts": ("127.0.0.1", "localhost",
                                                               "*.example.com")})


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://10.0.0.1/admin", "http://localhost:6379/", "http://[::1]/",
])
async def test_a_redirect_to_a_non_public_target_is_refused(
    worker: Any, queue: Any, redirector: tuple[str, type[Redirector]], target: str
) -> None:
    base, handler = redirector
    job = await queue.enqueue("fetch_external_data", {"url": f"{base}/to?{target}"},
                              owner="ssrf")
    view = await queue.wait(job.id, "ssrf", timeout=15)
    assert view.status == "failed"
    assert view.error is not None and view.error["type"] == "FetchRefused"
    assert len(handler.hits) == 1  # the first hop only; the target was never contacted
    record("security SSRF", non_public_addresses=len(NON_PUBLIC), redirect_targets=5,
           fetched=0)
