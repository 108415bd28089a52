"""A thin client of the Offload HTTP API, for the CLI, the demo and the end-to-end tests.

It speaks only HTTP to the gateway, with the bearer token, exactly as any other caller
would; nothing here reaches behind the API.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

FINISHED = frozenset({"done", "failed", "aborted", "expired"})
# The longest ``?wait=`` the API allows by default (OFFLOAD_API_MAX_WAIT_SECONDS); a longer
# one is capped by the API, so asking for more only costs nothing.
LONG_POLL_SECONDS = 20


class ApiCallError(RuntimeError):
    """The API answered with an error status; ``body`` is its JSON (or text)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {describe_error(body)}")


def describe_error(body: Any) -> str:
    """The message of Offload's ``{"error": {...}}`` or API Gateway's ``{"message"}``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            details = error.get("details")
            text = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            return f"{text} {details}" if details else text
        if "message" in body:
            return str(body["message"])
    return str(body)[:500]


def job_id_of(body: dict[str, Any]) -> str:
    """The job id in an enqueue response."""
    for key in ("id", "job_id"):
        if isinstance(body.get(key), str):
            return str(body[key])
    job = body.get("job")
    if isinstance(job, dict):
        return job_id_of(job)
    raise ApiCallError(200, {"message": f"no job id in the response: {body}"})


@dataclass
class ApiClient:
    base_url: str
    token: str | None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, *, json: Any = None,
             params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Any:
        """The JSON body of a 2xx response; ApiCallError otherwise."""
        response = self._http.request(method, path, json=json, params=params, headers=headers)
        try:
            body: Any = response.json() if response.content else None
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiCallError(response.status_code, body)
        return body

    def enqueue(self, name: str, data: dict[str, Any],
                idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        body: dict[str, Any] = self.call("POST", f"/jobs/{name}", json=data, headers=headers)
        return body

    def status(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"/jobs/{job_id}")
        return body

    def abort(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("DELETE", f"/jobs/{job_id}")
        return body

    def retry(self, job_id: str) -> dict[str, Any]:
        """Enqueue a dead letter again; the new job (202)."""
        body: dict[str, Any] = self.call("POST", f"/jobs/{job_id}/retry")
        return body

    def list_jobs(self, *, status: str | None = None, name: str | None = None,
                  limit: int = 20, next: str | None = None) -> dict[str, Any]:
        """One page of the caller's jobs, newest first: ``{"items", "next"}``."""
        params = {k: v for k, v in {"status": status, "name": name, "limit": limit,
                                    "next": next}.items() if v is not None}
        body: dict[str, Any] = self.call("GET", "/jobs", params=params)
        return body

    def long_poll(self, job_id: str, wait: int, wait_for: str = "finish") -> dict[str, Any]:
        """``GET /jobs/{id}?wait=N``: returns when the job finishes (or, with
        ``wait_for="progress"``, reports new progress), or after ``wait`` seconds."""
        params = {"wait": wait, "wait_for": wait_for} if wait > 0 else None
        body: dict[str, Any] = self.call("GET", f"/jobs/{job_id}", params=params)
        return body

    def follow(self, job_id: str, timeout: float,
               on_change: Callable[[dict[str, Any]], None] | None = None,
               max_wait: int = LONG_POLL_SECONDS) -> dict[str, Any]:
        """Long-poll until the job finished or ``timeout`` passed, calling ``on_change``
        with each view whose status or progress differs from the last; the last view."""
        deadline = time.monotonic() + timeout
        seen: tuple[Any, Any] | None = None
        first = True  # a plain read first, so the state it starts in is shown at once
        while True:
            left = deadline - time.monotonic()
            wait = 0 if first else max(0, min(max_wait, int(left)))
            body = self.long_poll(job_id, wait, "progress")
            state = (body.get("status"), body.get("progress"))
            if on_change is not None and state != seen:
                on_change(body)
            seen = state
            if body.get("status") in FINISHED or time.monotonic() >= deadline:
                return body
            if wait == 0 and not first:  # under a second left: one more read ends it
                time.sleep(max(0.0, deadline - time.monotonic()))
            first = False

    def await_job(self, job_id: str, timeout: float, interval: float = 0.3) -> dict[str, Any]:
        """The job once it exists: an upload's job answers 404 until its S3 event has been
        handled. The last 404 is raised after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.status(job_id)
            except ApiCallError as exc:
                if exc.status != 404 or time.monotonic() >= deadline:
                    raise
            time.sleep(interval)

    def wait(self, job_id: str, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        """Poll until the job finished or ``timeout`` passed; the last status seen."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(job_id)
            if body.get("status") in FINISHED or time.monotonic() >= deadline:
                return body
            time.sleep(interval)

    def create_upload(self, filename: str, content_type: str, size: int) -> dict[str, Any]:
        body: dict[str, Any] = self.call(
            "POST", "/uploads",
            json={"filename": filename, "content_type": content_type, "size": size},
        )
        return body


def post_presigned(upload: dict[str, Any], filename: str, data: bytes,
                   content_type: str, timeout: float = 30.0) -> None:
    """Send the file with a presigned POST (``{"url", "fields"}``) as a browser form would."""
    response = _uploads_client().post(
        upload["url"], data=upload["fields"], timeout=timeout,
        files={"file": (filename, data, content_type)},
    )
    if response.status_code >= 300:
        raise ApiCallError(response.status_code, response.text)


_uploads: httpx.Client | None = None
_uploads_lock = threading.Lock()


def download_file(url: str, destination: Path, timeout: float = 60.0) -> int:
    """Fetch a presigned GET ``url`` into ``destination`` (streamed); the bytes written.
    No API token is sent: the URL's signature authorises it."""
    with _uploads_client().stream("GET", url, timeout=timeout) as response:
        if response.status_code >= 300:
            response.read()
            raise ApiCallError(response.status_code, response.text)
        written = 0
        partial = destination.with_name(destination.name + ".part")
        with partial.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        partial.replace(destination)
        return written


def _uploads_client() -> httpx.Client:
    """One pooled client for every presigned upload and download in the process, as a
    browser keeps its connection to S3 (a client per upload would load the CA bundle and
    reconnect each time). It carries no API token: the signature authorises the request."""
    global _uploads
    with _uploads_lock:
        if _uploads is None:
            _uploads = httpx.Client()
            atexit.register(_uploads.close)
        return _uploads
