"""``fetch_external_data``: download a document from an allow-listed host into S3.

Guarding against server-side request forgery, every hop (the URL, then each redirect):

- the host must be in ``OFFLOAD_FETCH_ALLOWED_HOSTS``: an exact name, or ``*.suffix`` for
  any subdomain of ``suffix`` (not ``suffix`` itself). Empty list: nothing is fetched.
- the name is resolved once and *every* address must be public; the request then connects
  to one of those vetted addresses (Host header and TLS SNI keep the name), so a second DNS
  answer cannot point the connection somewhere else (DNS rebinding).
- an IP literal listed exactly in the allow-list is fetched even if it is private or
  loopback: an operator's explicit choice (the tests use ``127.0.0.1``). A *name* that
  resolves to a private address is refused even when the name is listed.
- redirects are followed by hand, at most ``MAX_REDIRECTS``, each one checked as above.

The body is streamed and abandoned past ``fetch_max_bytes``; the whole fetch, all hops
included, must finish within ``fetch_timeout_seconds``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from shared.blobs import blob_ref
from shared.errors import PermanentJobError, TransientJobError
from shared.hosts import IPAddress, host_allowed, ip_literal, is_public_address, normalize_host
from shared.jobs import FetchExternalInput
from worker.context import WorkerContext
from worker.retry_policy import current_job
from worker.tasks.base import job

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_CONTENT_TYPE = "application/octet-stream"



class FetchRefused(PermanentJobError):
    """The URL (or a redirect) points somewhere this worker may not fetch from."""


class FetchTooLarge(PermanentJobError):
    """The response body is larger than ``fetch_max_bytes``."""


@dataclass(frozen=True)
class Target:
    """A vetted hop: the URL as given, and the addresses it may be fetched from."""

    url: httpx.URL
    host: str
    addresses: tuple[str, ...]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise TransientJobError(f"DNS lookup of {host} failed for now: {exc}") from exc
        raise FetchRefused(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


async def vet(url: httpx.URL, allowed: tuple[str, ...]) -> Target:
    """Check one hop against the rules in the module docstring; FetchRefused if it fails."""
    if url.scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs are fetched, not {url.scheme!r}")
    if not allowed:
        raise FetchRefused("fetching is disabled: OFFLOAD_FETCH_ALLOWED_HOSTS is empty")
    host = normalize_host(url.raw_host.decode("ascii"))
    if not host_allowed(host, allowed):
        raise FetchRefused(f"host {host!r} is not in the fetch allow-list")
    literal = ip_literal(host)
    if literal is not None:
        explicitly_listed = any(ip_literal(entry) == literal for entry in allowed)
        if not explicitly_listed and not is_public_address(literal):
            raise FetchRefused(f"{host} is not a public address")
        return Target(url, host, (str(literal),))
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    private = [str(ip) for ip in addresses if not is_public_address(ip)]
    if private or not addresses:
        raise FetchRefused(f"{host} resolves to a non-public address ({', '.join(private)})")
    return Target(url, host, tuple(str(ip) for ip in addresses))


async def send_pinned(http: httpx.AsyncClient, target: Target, limit_seconds: float, *,
                      post: tuple[bytes, dict[str, str]] | None = None) -> httpx.Response:
    """GET ``target`` (or POST ``post``'s body and headers) from one of its vetted
    addresses, trying each in turn."""
    body, headers = post if post is not None else (None, {})
    method = "POST" if post is not None else "GET"
    host_header = target.url.netloc.decode("ascii")
    failure: Exception | None = None
    for address in target.addresses:
        request = http.build_request(
            method, target.url.copy_with(host=address), timeout=limit_seconds, content=body,
            # "close": a pooled connection keyed by this IP must never carry a request for
            # another host whose certificate it was not checked against.
            headers={**headers, "Host": host_header, "Connection": "close"},
            extensions={"sni_hostname": target.host},
        )
        try:
            return await http.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
    raise TransientJobError(f"cannot connect to {target.host}: {failure}")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchTooLarge(f"the body is {declared} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchTooLarge(f"the body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_status(url: httpx.URL, status: int) -> None:
    if status >= 500 or status in (408, 425, 429):
        raise TransientJobError(f"{url} answered {status}")
    if status >= 400 or status < 200 or (300 <= status < 400):
        raise PermanentJobError(f"{url} answered {status}")


async def _fetch(ctx: WorkerContext, url: httpx.URL) -> tuple[httpx.URL, int, str, bytes]:
    settings = ctx.settings
    for _hop in range(MAX_REDIRECTS + 1):
        target = await vet(url, settings.fetch_allowed_hosts)
        response = await send_pinned(ctx.http, target, settings.fetch_timeout_seconds)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                url = url.join(location)
                continue
            _check_status(url, response.status_code)
            body = await _read_capped(response, settings.fetch_max_bytes)
            content_type = response.headers.get("content-type") or DEFAULT_CONTENT_TYPE
            return url, response.status_code, content_type, body
        finally:
            await response.aclose()
    raise PermanentJobError(f"more than {MAX_REDIRECTS} redirects")


@job("fetch_external_data")
async def fetch_external_data(ctx: WorkerContext, inp: FetchExternalInput) -> dict[str, Any]:
    url = str(inp.url)
    try:
        with anyio.fail_after(ctx.settings.fetch_timeout_seconds):
            final_url, status, content_type, body = await _fetch(ctx, httpx.URL(url))
    except TimeoutError as exc:
        raise TransientJobError(
            f"fetching {url} took over {ctx.settings.fetch_timeout_seconds}s"
        ) from exc
    except httpx.TransportError as exc:  # connection reset, protocol error, read timeout
        raise TransientJobError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc
    # Keyed per owner: another caller fetching the same URL never overwrites this result.
    owner = current_job().owner
    key = f"fetched/{owner}/{hashlib.sha256(url.encode()).hexdigest()}"
    blob = await ctx.blobs.put_bytes(key, body, content_type, owner=owner, kind="fetched")
    return {
        "url": url,
        "final_url": str(final_url),
        "status": status,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "bucket": blob.bucket,
        "key": blob.key,
        "content_type": content_type,
        "file": blob_ref(blob, "body"),
    }
