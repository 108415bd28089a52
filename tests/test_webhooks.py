"""Webhooks: registered per caller, URLs vetted like the fetch job's, deliveries signed."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared import webhooks
from shared.config import Settings
from shared.queue import JobQueue
from tests.test_api import Api, LambdaContainer, assert_error

ROOT = Path(__file__).resolve().parent.parent
REPORT = {"start_date": "2026-11-01", "end_date": "2026-11-27"}


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on loopback: records each POST's signature header and body."""

    daemon_threads = True

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str, bytes]] = []

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.headers.get(webhooks.HEADER, ""), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/offload"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    box = LambdaContainer(settings)
    yield Api(box)
    box.close()


def test_signatures_verify_and_tampering_or_age_does_not() -> None:
    body = b'{"job_id":"x","state":"succeeded"}'
    header = webhooks.sign("whsec_test", body)
    assert webhooks.verify("whsec_test", header, body)
    assert not webhooks.verify("whsec_test", header, body + b" ")
    assert not webhooks.verify("whsec_other", header, body)
    assert not webhooks.verify("whsec_test", header, body, now=time.time() + 301)
    assert not webhooks.verify("whsec_test", "v1=abc", body)


def test_the_readme_verification_snippet_works_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Verifying a webhook"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    assert len(code[1].strip().splitlines()) <= 6  # the import and the function's five lines
    scope: dict[str, Any] = {}
    exec(compile(code[1], "README.md", "exec"), scope)
    body = b'{"state":"failed"}'
    assert scope["verified"]("whsec_a", webhooks.sign("whsec_a", body), body)
    assert not scope["verified"]("whsec_a", webhooks.sign("whsec_a", body), b"{}")


def test_a_caller_registers_lists_and_deletes_their_webhooks(api: Api,
                                                             receiver: Receiver) -> None:
    made = api("POST", "/webhooks", body={"url": receiver.url, "events": ["succeeded"]})
    assert made.status == 201, made.text
    assert made.json["secret"].startswith("whsec_")
    listed = api("GET", "/webhooks").json["items"]
    assert [h["id"] for h in listed] == [made.json["id"]]
    assert "secret" not in listed[0]
    assert api("GET", "/webhooks", sub="someone-else").json["items"] == []
    assert_error(api("DELETE", f"/webhooks/{made.json['id']}", sub="someone-else"), 404,
                 "not_found")
    assert api("DELETE", f"/webhooks/{made.json['id']}").status == 200
    assert_error(api("DELETE", f"/webhooks/{made.json['id']}"), 404, "not_found")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.1/hook", "file:///etc/passwd",
                                 "https://not-allowed.example/hook", "http:///nohost"])
def test_urls_the_fetch_job_would_refuse_are_refused(api: Api, url: str) -> None:
    refused = api("POST", "/webhooks", body={"url": url, "events": ["failed"]})
    error = assert_error(refused, 422, "validation_failed")
    assert error["details"][0]["loc"] == ["body", "url"]


@pytest.mark.anyio
async def test_a_job_delivers_its_events_signed_to_its_owners_webhook(
        worker: Any, queue: JobQueue, receiver: Receiver) -> None:
    hook = webhooks.new("ada", receiver.url, ("started", "succeeded"))
    assert await webhooks.register(queue.redis, queue.keys.prefix, hook)
    job = await queue.enqueue("generate_sales_report", REPORT, owner="ada")
    assert (await queue.wait(job.id, "ada", timeout=30)).status == "done"
    deadline = time.monotonic() + 20
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        await queue.redis.ping()
        time.sleep(0.05)
    states = []
    for header, body in receiver.received:
        assert webhooks.verify(hook.secret, header, body)
        event = json.loads(body)
        assert event["job_id"] == job.id and event["owner"] == "ada"
        states.append(event["state"])
    assert sorted(states) == ["started", "succeeded"]


@pytest.mark.anyio
async def test_a_delivery_to_a_refused_address_fails_for_good(worker: Any,
                                                              queue: JobQueue) -> None:
    # A URL that got in before an allow-list change is vetted again at delivery.
    hook = webhooks.new("bob", "http://169.254.169.254/latest/meta-data/", ("succeeded",))
    assert await webhooks.register(queue.redis, queue.keys.prefix, hook)
    job = await queue.enqueue("deliver_webhook", {"webhook_id": hook.id,
                                                   "event": {"state": "succeeded"}}, owner="bob")
    view = await queue.wait(job.id, "bob", timeout=30)
    assert view.status == "failed"
    assert view.error is not None and "not in the fetch allow-list" in view.error["message"]
    assert view.tries == 1
