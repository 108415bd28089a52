"""The console in a real browser (Debian's chromium driven by Playwright) against
``offload dev``: what a user does with it, page by page, with a screenshot of each.

Every page a test opens records its network requests; none may leave 127.0.0.1.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from infra.local.client import ApiClient
from infra.local.samples import exif_rotated_jpeg
from tests.devstack import REPO_ROOT, DevStack, dev_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 60_000


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Console:
    page: Any
    stack: DevStack
    requests: list[str] = field(default_factory=list)

    def open(self, route: str = "#/jobs") -> None:
        self.page.goto(f"{self.stack.state.api_url}/console{route}")
        self.page.wait_for_selector("#user-switcher", timeout=TIMEOUT_MS)
        if route != "#/jobs":
            self.page.evaluate("r => { location.hash = r; }", route)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def status_is(self, status: str) -> None:
        self.page.wait_for_selector(f"h1 .badge[data-status='{status}']", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    if chromium() is None:
        pytest.skip("BROWSER TESTS SKIPPED: no chromium on PATH (apt-get install chromium)")
    with dev_stack(tmp_path_factory.mktemp("console-state")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: DevStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console(browser: Any, stack: DevStack) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    seen = Console(page, stack)
    page.on("request", lambda request: seen.requests.append(request.url))
    yield seen
    context.close()
    leaving = [u for u in seen.requests
               if urlsplit(u).scheme in ("http", "https") and urlsplit(u).hostname != "127.0.0.1"]
    assert not leaving, f"requests left 127.0.0.1: {leaving}"
    assert seen.requests, "the page made no request at all"


def wait_for_status(client: ApiClient, job_id: str, wanted: set[str],
                    timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = client.status(job_id)
        if view["status"] in wanted:
            return view
        time.sleep(0.2)
    pytest.fail(f"job {job_id} never reached {wanted}: {view}")


def test_the_jobs_page_lists_my_jobs_and_assets_come_from_the_api(console: Console) -> None:
    with console.stack.client() as client:
        job_id = client.enqueue("fetch_external_data",
                                {"url": f"{console.stack.state.fixtures_url}/rates.json"})["id"]
        wait_for_status(client, job_id, {"done"})
    console.open()
    console.page.wait_for_selector(f"#jobs-table tr[data-job='{job_id}']")
    row = console.page.inner_text(f"#jobs-table tr[data-job='{job_id}']")
    assert "fetch_external_data" in row and "done" in row
    console.shot("jobs")
    # The page's own files: same origin, strict CSP.
    response = console.page.request.get(f"{console.stack.state.api_url}/console")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    # Swagger UI and the schema open without a token (its Authorize button takes one).
    for path in ("/swagger", "/openapi.json"):
        assert console.page.request.get(f"{console.stack.state.api_url}{path}").status == 200


def test_a_report_enqueued_through_the_form_finishes_with_a_working_download(
        console: Console) -> None:
    console.open("#/new?job=generate_sales_report")
    console.page.wait_for_selector("form#new-job input[name='start_date']")
    console.shot("new-job")
    console.page.fill("form#new-job input[name='start_date']", "2026-11-01")
    console.page.fill("form#new-job input[name='end_date']", "2026-11-27")
    console.page.click("form#new-job button[type='submit']")
    console.status_is("done")
    links = console.page.eval_on_selector_all("#downloads a", "els => els.map(e => e.href)")
    assert len(links) == 2, links
    for link in links:
        fetched = console.page.request.get(link)
        assert fetched.status == 200, link
        assert fetched.body()
    console.shot("report-detail")


def test_an_uploaded_jpeg_shows_both_thumbnails(console: Console, tmp_path: Path) -> None:
    sample = exif_rotated_jpeg()
    photo = tmp_path / sample.filename
    photo.write_bytes(sample.data)
    console.open("#/upload")
    console.page.wait_for_selector("#upload-file")
    console.page.set_input_files("#upload-file", str(photo))
    for stage in ("uploaded", "done"):
        console.page.wait_for_selector(f"#upload-stages [data-stage='{stage}']")
    console.page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#upload-result img.preview')];"
        " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    console.shot("upload")
    console.page.click("#upload-result a[href^='#/jobs/']")
    console.page.wait_for_function(
        "() => [...document.querySelectorAll('#downloads img.preview')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length === 2")
    console.shot("image-job-detail")


def test_a_slow_job_is_aborted_from_its_page(console: Console) -> None:
    with console.stack.client() as client:
        slow = f"{console.stack.state.fixtures_url}/slow?seconds=60"
        job_id = client.enqueue("fetch_external_data", {"url": slow})["id"]
        wait_for_status(client, job_id, {"running"}, timeout=30)
    console.open(f"#/jobs/{job_id}")
    console.page.click("#abort")
    console.status_is("aborted")
    console.shot("aborted-job")


def test_a_job_is_replayed_with_an_edited_input_and_links_to_the_original(
        console: Console) -> None:
    rates = f"{console.stack.state.fixtures_url}/rates.json"
    with console.stack.client() as client:
        original = client.enqueue("fetch_external_data", {"url": rates})["id"]
        wait_for_status(client, original, {"done"})
    console.open(f"#/jobs/{original}")
    console.status_is("done")
    assert rates in console.page.inner_text("section pre")  # its input, shown
    console.page.click("details.replay summary")
    console.page.fill("#replay-input", f'{{"url": "{rates}?edited=1"}}')
    console.page.click("#replay")
    console.page.wait_for_selector(f"a[href='#/jobs/{original}']")
    assert "replay of" in console.page.inner_text("p.mono")
    console.status_is("done")
    assert "edited=1" in console.page.inner_text("section pre")
    console.shot("replay")


def test_dead_letters_are_retried_together(console: Console) -> None:
    with console.stack.client() as client:
        failed = [client.enqueue("fetch_external_data", {"url": f"https://not-allowed.example/{n}"})["id"]
                  for n in range(2)]
        for job_id in failed:
            wait_for_status(client, job_id, {"failed"})
    console.open("#/dead-letters")
    for job_id in failed:
        console.page.check(f"#dead-letters tr[data-job='{job_id}'] input[type='checkbox']")
    console.shot("dead-letters")
    console.page.click("#retry-selected")
    console.page.wait_for_function(
        "() => document.querySelectorAll('#retry-status li a').length === 2")
    console.page.click("#retry-status li a >> nth=0")
    console.page.wait_for_selector("h1 .badge")


def test_another_user_sees_none_of_my_jobs(console: Console) -> None:
    with console.stack.client() as client:
        mine = client.enqueue("fetch_external_data",
                              {"url": f"{console.stack.state.fixtures_url}/rates.json"})["id"]
    console.open()
    console.page.wait_for_selector(f"#jobs-table tr[data-job='{mine}']")
    other_sub = next(iter(console.stack.state.other_tokens.values()))
    console.page.select_option("#user-switcher", other_sub)
    console.page.wait_for_function(
        "sub => document.querySelector('#user-switcher').value === sub", arg=other_sub)
    console.page.wait_for_selector("#jobs-table, .notice")
    assert console.page.query_selector(f"tr[data-job='{mine}']") is None
    console.page.evaluate("id => { location.hash = '#/jobs/' + id; }", mine)
    console.page.wait_for_selector(".notice.error")
    assert "404" in console.page.inner_text(".notice.error")
    console.shot("other-user")


def test_the_local_inbox_shows_sent_email(console: Console) -> None:
    with console.stack.client() as client:
        job_id = client.enqueue("send_welcome_email", {})["id"]
        wait_for_status(client, job_id, {"done"})
    console.open("#/inbox")
    console.page.wait_for_selector("#inbox li")
    assert "Welcome to Offload" in console.page.inner_text("#inbox")
    console.shot("inbox")


def test_the_operations_page_shows_workers_queues_and_schedules(console: Console) -> None:
    console.open("#/admin")
    console.page.wait_for_selector("#schedules tr[data-schedule='send_daily_digest']")
    assert "Workers alive: 1" in console.page.inner_text("#workers-alive")
    digest = console.page.inner_text("#schedules tr[data-schedule='send_daily_digest']")
    assert "cron(0 6 * * ? *)" in digest
    assert console.page.query_selector_all("#queue-depth tr")
    console.shot("operations")
    other_sub = next(iter(console.stack.state.other_tokens.values()))
    console.page.select_option("#user-switcher", other_sub)
    console.page.wait_for_function(
        "() => ![...document.querySelectorAll('nav.main a')]"
        ".some(a => a.textContent === 'Operations')")
    console.page.evaluate("() => { location.hash = '#/admin'; }")
    console.page.wait_for_selector(".notice.error")
    assert "403" in console.page.inner_text(".notice.error")


def test_every_job_so_far_is_listed_newest_first(console: Console) -> None:
    console.open()
    console.page.wait_for_selector("#jobs-table tbody tr")
    rows = console.page.query_selector_all("#jobs-table tbody tr")
    assert len(rows) >= 8  # what the tests above enqueued as Alice
    console.shot("jobs-many")
