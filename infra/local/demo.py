"""``offload demo``: the main job, end to end, against the dev stack.

Seeds users and orders, uploads generated images through ``POST /uploads`` and the
presigned POST (the S3 event turns each into a job), enqueues every job the catalogue lets
callers enqueue over HTTP, follows them live, then writes thumbnails and reports to
``./demo-output/`` and prints one table. Exit status 0 only when every job succeeded.

With no stack running it starts one (``offload dev`` on free ports, its log in
``.offload/demo-stack.log``) and stops it afterwards.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infra.local.client import FINISHED, ApiCallError, ApiClient, job_id_of, post_presigned
from infra.local.samples import Sample, all_samples, describe_picture
from infra.local.seed import seed, settings_for, stack_environment
from infra.local.state import StackState, state_dir

STACK_START_TIMEOUT = 180.0
_STYLE = {"done": "green", "failed": "red", "aborted": "red", "expired": "red",
          "running": "yellow", "queued": "cyan", "scheduled": "cyan"}


@dataclass
class TrackedJob:
    """One job the demo follows, from enqueue (or upload) to its end."""

    label: str
    name: str
    job_id: str
    started: float = field(default_factory=time.monotonic)
    view: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    outputs: list[Path] = field(default_factory=list)
    detail: str = ""

    @property
    def status(self) -> str:
        return str(self.view.get("status") or "pending")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def tries(self) -> int:
        return int(self.view.get("tries") or 0)

    def duration(self) -> str:
        start, end = self.view.get("enqueued_at"), self.view.get("finished_at")
        if start and end:
            seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        else:
            seconds = time.monotonic() - self.started
        return f"{seconds:.1f} s"


# --- the stack --------------------------------------------------------------------------


def _start_stack(console: Console) -> tuple[subprocess.Popen[bytes], StackState]:
    log_path = state_dir() / "demo-stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"No dev stack is running here: starting one (its log: {log_path})")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "offload.cli", "dev", "--port", "0", "--ui-port", "0",
             "--exit-with-parent"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the stack itself
        )
    try:
        return proc, _wait_until_up(proc, log_path)
    except BaseException:  # Ctrl-C included: never leave the stack behind
        _stop_stack(proc)
        raise


def _wait_until_up(proc: subprocess.Popen[bytes], log_path: Path) -> StackState:
    deadline = time.monotonic() + STACK_START_TIMEOUT
    while time.monotonic() < deadline:
        state = StackState.load()
        if state is not None and state.supervisor_pid == proc.pid:
            return state
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
            raise RuntimeError("the dev stack did not start:\n" + "\n".join(tail))
        time.sleep(0.2)
    raise RuntimeError(f"the dev stack was not up after {STACK_START_TIMEOUT:.0f} s "
                       f"(see {log_path})")


def _stop_stack(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_demo(output: Path, timeout: float, console: Console | None = None) -> int:
    """Run the demo; 0 when every job succeeded."""
    # A log file or CI is no terminal: give the final table room instead of 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    owned: subprocess.Popen[bytes] | None = None
    state = StackState.load()
    try:
        if state is None:
            owned, state = _start_stack(console)
        return Demo(state, output, console).run(timeout)
    except (RuntimeError, ApiCallError, OSError, httpx.HTTPError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        if owned is not None:
            console.print("Stopping the dev stack the demo started ...")
            _stop_stack(owned)


# --- the demo -------------------------------------------------------------------------


class Demo:
    def __init__(self, state: StackState, output: Path, console: Console) -> None:
        self.state = state
        self.output = output
        self.console = console
        self.api = ApiClient(state.api_url, state.token)
        self.jobs: list[TrackedJob] = []
        self.settings = settings_for(state.env)

    def run(self, timeout: float) -> int:
        started = time.monotonic()
        with self.api:
            self.api.call("GET", "/health")
            seeded = anyio.run(seed, self.settings)
            self.console.print(f"Seeded {len(seeded.user_ids)} users and {seeded.orders} "
                               f"orders into {self.state.mongodb_uri}")
            self._upload(all_samples())
            self._enqueue()
            self._follow(timeout)
        self._collect()
        self.console.print(self._table(final=True))
        self.console.print(f"Outputs in {self.output.resolve()}/ "
                           f"({time.monotonic() - started:.1f} s in all)")
        failed = [j for j in self.jobs if j.status != "done"]
        for job in failed:
            self.console.print(f"[red]FAILED[/red] {job.label} ({job.job_id}): {job.status} "
                               f"{job.detail}")
        if not failed:
            self.console.print("[green]every job succeeded[/green]")
        return 1 if failed else 0

    def _upload(self, samples: list[Sample]) -> None:
        for sample in samples:
            upload = self.api.create_upload(sample.filename, sample.content_type,
                                            len(sample.data))
            post_presigned(upload, sample.filename, sample.data, sample.content_type)
            self.jobs.append(TrackedJob(f"process_uploaded_image ({sample.filename})",
                                        "process_uploaded_image", upload["job_id"]))

    def _enqueue(self) -> None:
        today = datetime.now(UTC).date()
        requests: list[tuple[str, dict[str, Any]]] = [
            ("send_welcome_email", {}),
            ("generate_sales_report", {"start_date": str(today - timedelta(days=7)),
                                       "end_date": str(today)}),
            ("fetch_external_data", {"url": f"{self.state.fixtures_url}/rates.json"}),
            ("place_order", {"amount_cents": 4200, "currency": "EUR",
                             "reference": f"demo-order-{int(time.time())}"}),
        ]
        for name, data in requests:
            body = self.api.enqueue(name, data)
            self.jobs.append(TrackedJob(name, name, job_id_of(body), view=body))

    def _follow(self, timeout: float) -> None:
        """Poll every unfinished job until all finished or ``timeout`` passed: a live table
        on a terminal, one line per status change otherwise (logs, CI)."""
        deadline = time.monotonic() + timeout
        if self.console.is_terminal:
            with Live(self._table(), console=self.console, refresh_per_second=4,
                      transient=True) as live:
                self._poll(deadline, lambda: live.update(self._table()))
        else:
            shown: dict[str, str] = {}
            self._poll(deadline, lambda: self._print_changes(shown))
        for job in self.jobs:
            if not job.finished:
                job.detail = f"not finished after {timeout:.0f} s"

    def _poll(self, deadline: float, show: Callable[[], None]) -> None:
        while time.monotonic() < deadline:
            for job in self.jobs:
                if not job.finished:
                    self._refresh(job)
            show()
            if all(job.finished for job in self.jobs):
                return
            time.sleep(0.4)

    def _print_changes(self, shown: dict[str, str]) -> None:
        for job in self.jobs:
            status = job.note or job.status
            if shown.get(job.job_id) != status:
                shown[job.job_id] = status
                self.console.print(f"  {job.label}: {status}")

    def _refresh(self, job: TrackedJob) -> None:
        try:
            job.view = self.api.status(job.job_id)
            job.note = ""
        except ApiCallError as exc:
            if exc.status != 404:
                raise
            job.note = "waiting for the S3 event"

    # --- results ---------------------------------------------------------------------

    def _collect(self) -> None:
        """Download what each finished job produced and describe its result."""
        from shared.aws import s3_client

        with stack_environment(self.state.env):  # boto3 reads the stack's fake credentials
            s3 = s3_client(self.settings)
        for job in self.jobs:
            result = job.view.get("result")
            if job.status != "done" or not isinstance(result, dict):
                error = job.view.get("error") or {}
                job.detail = job.detail or f"{error.get('type', '')}: {error.get('message', '')}"
                continue
            job.detail = describe(job.name, result)
            for bucket, key, target in self._outputs_of(job, result):
                target.parent.mkdir(parents=True, exist_ok=True)
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                target.write_bytes(body)
                job.outputs.append(target)
                if "thumbnail" in target.name:
                    width, height = describe_picture(body).size
                    job.detail += f"; thumbnail {width}x{height}"

    def _outputs_of(self, job: TrackedJob, result: dict[str, Any]) -> list[tuple[str, str, Path]]:
        results = self.settings.results_bucket
        if job.name == "process_uploaded_image":
            stem = job.label.partition("(")[2].rstrip(")").rsplit(".", 1)[0]
            key = result.get("variants", {}).get("thumbnail")
            return [(results, key, self.output / "thumbnails" / f"{stem}.thumbnail.webp")] \
                if key else []
        if job.name == "generate_sales_report":
            bucket = result.get("bucket", results)
            return [(bucket, result[k], self.output / "reports" / Path(result[k]).name)
                    for k in ("csv_key", "pdf_key") if result.get(k)]
        if job.name == "fetch_external_data" and result.get("key"):
            name = Path(str(result.get("url", "fetched"))).name or "fetched"
            return [(result.get("bucket", results), result["key"],
                     self.output / "fetched" / name)]
        return []

    def _table(self, final: bool = False) -> Table:
        table = Table(title="Offload demo" if final else None, show_lines=False)
        for column in ("job", "status", "tries", "duration", "result"):
            table.add_column(column, overflow="fold")
        for job in self.jobs:
            status = Text(job.note or job.status, style=_STYLE.get(job.status, "dim"))
            detail = job.detail if final else (job.detail or "")
            table.add_row(job.label, status, str(job.tries), job.duration(), detail)
        return table


def describe(name: str, result: dict[str, Any]) -> str:
    """A one-line summary of a job's result: S3 keys, e-mail ids, counts."""
    if name == "process_uploaded_image":
        variants = result.get("variants") or {}
        where = str(variants.get("thumbnail", "")).rpartition("/")[0]
        return (f"{result.get('width')}x{result.get('height')} -> {where}/"
                f"{{{','.join(Path(str(k)).name for k in variants.values())}}}")
    if name == "send_welcome_email":
        return f"e-mail {result.get('message_id')}"
    if name == "generate_sales_report":
        return (f"{result.get('rows')} rows -> {result.get('csv_key')}, "
                f"{result.get('pdf_key')}")
    if name == "fetch_external_data":
        return f"{result.get('size')} bytes (HTTP {result.get('status')}) -> {result.get('key')}"
    if name == "place_order":
        return f"order {result.get('order_id')}, e-mail {result.get('message_id')}"
    return json.dumps(result, default=str)[:120]
