"""End to end: the client commands of ``offload`` against ``offload dev`` on free ports,
run as a person runs them (a subprocess reading ``.offload/dev.json``), and what the
quiet default log shows meanwhile.

One stack for the module; the tests run in file order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.samples import transparent_png
from tests.devstack import REPO_ROOT, DevStack, dev_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with dev_stack(tmp_path_factory.mktemp("offload-cli"), "--workers", "1") as running:
        yield running


def cli(stack: DevStack, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OFFLOAD_STATE_DIR": str(stack.state_dir)}
    return subprocess.run([sys.executable, "-m", "offload.cli", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def first_json(stdout: str) -> Any:
    """The first JSON document a command printed (enqueue prints the 202, then the job)."""
    return json.JSONDecoder().raw_decode(stdout.lstrip())[0]


def last_json(stdout: str) -> Any:
    start = stdout.rindex("\n{") + 1 if "\n{" in stdout else 0
    return json.loads(stdout[start:])


def banner(stack: DevStack) -> str:
    deadline = time.monotonic() + 30
    while "Ctrl-C stops everything." not in (text := stack.log.read_text(errors="replace")):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.2)
    return text


def test_the_banner_names_the_seeded_users_with_ids_and_tokens(stack: DevStack) -> None:
    text = banner(stack)
    alice = re.search(r"Alice Martin <alice@example.com>  id ([0-9a-f]{24})  token (\S+)",
                      text)
    assert alice is not None, text[-3000:]
    assert alice.group(2) == stack.state.token
    assert re.search(r"Bob Nakamura <bob@example.com>  id [0-9a-f]{24}  token dev2-", text)
    assert "Carol Okafor <carol@example.com>  id" in text


def test_enqueue_wait_shows_progress_then_download_saves_the_files(
        stack: DevStack, tmp_path: Path) -> None:
    # GIVEN a sales report enqueued and followed with --wait (not a terminal: plain lines)
    data = json.dumps({"start_date": "2026-11-01", "end_date": "2026-11-27"})
    run = cli(stack, "enqueue", "generate_sales_report", "--data", data, "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    job_id = first_json(run.stdout)["id"]
    # THEN stderr had one line per change, ending done; stdout ends with the job
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith(f"job {job_id}: ")]
    assert lines and lines[-1].startswith(f"job {job_id}: done"), run.stderr
    assert last_json(run.stdout)["status"] == "done"
    # WHEN its files are downloaded
    out = tmp_path / "reports"
    got = cli(stack, "download", job_id, "--out", str(out))
    assert got.returncode == 0, got.stderr
    # THEN both are there, as the API described them
    assert (out / "sales.csv").read_text().startswith("day,")
    assert (out / "sales.pdf").read_bytes().startswith(b"%PDF")
    # AND the listing has the job
    listed = cli(stack, "list", "--name", "generate_sales_report", "--json")
    assert job_id in [item["id"] for item in json.loads(listed.stdout)]
    table = cli(stack, "list", "--limit", "5")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"]
    # AND `offload events` shows its state changes, as EventBridge would receive them
    events = cli(stack, "events", "--job", job_id, "--no-follow", "--json")
    # (API and worker publish apart, so lines may arrive out of order: "time" orders them)
    details = sorted((json.loads(line)["detail"] for line in events.stdout.splitlines()),
                     key=lambda d: d["time"])
    states = [d["state"] for d in details]
    assert states[0] == "queued" and states[1] == "started" and states[-1] == "succeeded"
    assert "progress" in states


def test_welcome_email_lands_in_the_local_inbox(stack: DevStack) -> None:
    run = cli(stack, "enqueue", "send_welcome_email", "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    mail = cli(stack, "mail", "--to", "alice@example.com", "--last", "1")
    assert mail.returncode == 0, mail.stderr
    assert mail.stdout.startswith("To: alice@example.com\nSubject: ")
    assert "Hello Alice Martin" in mail.stdout
    assert "<p>" not in mail.stdout


def test_upload_prints_the_image_job_and_follows_it(stack: DevStack, tmp_path: Path) -> None:
    sample = transparent_png()
    path = tmp_path / sample.filename
    path.write_bytes(sample.data)
    run = cli(stack, "upload", str(path), "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "uploaded logo.png" in run.stderr
    job = last_json(run.stdout)
    assert (job["name"], job["status"]) == ("process_uploaded_image", "done")


def test_a_failed_job_is_listed_and_retried_as_a_new_job(stack: DevStack) -> None:
    # GIVEN a fetch that fails for good at once (404)
    data = json.dumps({"url": f"{stack.state.fixtures_url}/missing"})
    run = cli(stack, "enqueue", "fetch_external_data", "--data", data, "--wait")
    assert run.returncode == 1, run.stdout + run.stderr
    job_id = first_json(run.stdout)["id"]
    assert "answered 404" in run.stderr
    # WHEN failed jobs are listed and it is retried
    failed = cli(stack, "list", "--status", "failed")
    assert job_id in failed.stdout
    again = cli(stack, "retry", job_id, "--wait")
    # THEN it ran again as a new job (failing the same way)
    retried = first_json(again.stdout)
    assert retried["id"] != job_id
    assert retried["name"] == "fetch_external_data"
    assert again.returncode == 1, again.stdout + again.stderr


def test_the_local_docs_slow_fetch_runs_for_its_seconds_and_succeeds(stack: DevStack) -> None:
    # docs/LOCAL.md: `/slow?seconds=8` is a fetch that runs for 8 s
    data = json.dumps({"url": f"{stack.state.fixtures_url}/slow?seconds=8"})
    started = time.monotonic()
    run = cli(stack, "enqueue", "fetch_external_data", "--data", data, "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    # one byte a second: the eighth arrives 7 s after the first
    assert time.monotonic() - started >= 7
    job = last_json(run.stdout)
    assert (job["status"], job["tries"], job["result"]["size"]) == ("done", 1, 8)


def test_a_wrong_date_type_is_explained_by_the_cli(stack: DevStack) -> None:
    data = json.dumps({"start_date": 123, "end_date": "2026-11-27"})
    run = cli(stack, "enqueue", "generate_sales_report", "--data", data)
    assert run.returncode == 2
    assert "expected a date as YYYY-MM-DD" in run.stdout + run.stderr


def test_the_default_log_is_one_line_per_state_change(stack: DevStack) -> None:
    text = stack.log.read_text(errors="replace")
    lines = text.splitlines()
    # no metric documents, no polling, no per-image or per-request library lines
    assert not [ln for ln in lines if '| {"_aws"' in ln]
    assert not [ln for ln in lines if re.search(r"gateway\s+\| GET /jobs\S* 200", ln)]
    assert not [ln for ln in lines if "[pyvips]" in ln or "[httpx]" in ln]
    # each job start is one line, and the job that failed for good has its reason
    assert re.search(r"job generate_sales_report [0-9a-f]{32} try 1/3", text)
    assert "failed for good after 1 tries: PermanentJobError" in text
    assert "Retrying task" not in text
