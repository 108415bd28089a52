"""The API client commands of ``offload``: enqueue, status, list, retry, abort, download,
upload, mail. Each speaks HTTP to the API (the running dev stack's, from
``.offload/dev.json``, or ``--api-url``/``--token``) as any caller would.

Registered by :func:`infra.local.commands.register`. JSON goes to stdout (for scripts);
progress and hints go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

AddParser = Callable[..., argparse.ArgumentParser]
Action = Callable[[Any], int]

NO_STACK = ("no dev stack is running here (.offload/dev.json): start one with "
            "`./infra/local/offload dev`, or pass --api-url and --token")
# Suffixes whose content type Python's mimetypes may not know (it varies by platform).
IMAGE_TYPES = {".heic": "image/heic", ".heif": "image/heif", ".avif": "image/avif",
               ".webp": "image/webp", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".png": "image/png", ".gif": "image/gif", ".bmp": "image/bmp",
               ".tif": "image/tiff", ".tiff": "image/tiff"}
STATUSES = ("queued", "scheduled", "running", "done", "succeeded", "failed", "aborted",
            "expired")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  offload {line}" for line in lines)


def register(add_parser: AddParser) -> None:
    """Add the API client commands to ``offload``'s parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", default=None, help="default: the running dev stack's")
    common.add_argument("--token", default=None, help="default: the running dev stack's")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true",
                         help="follow the job (a live progress bar on a terminal) until it "
                              "finishes; exit 0 done, 1 failed/aborted/expired, 3 timed out")
    waiting.add_argument("--timeout", type=float, default=120.0,
                         help="seconds --wait waits (default 120)")

    p = add_parser("enqueue", parents=[common, waiting], help="enqueue a job through the API",
                   description="POST /jobs/NAME with the job's input. `offload jobs` lists "
                               "the jobs and their inputs.",
                   epilog=_examples(
                       "enqueue generate_sales_report --data "
                       "'{\"start_date\": \"2026-11-01\", \"end_date\": \"2026-11-27\"}' "
                       "--wait",
                       "enqueue fetch_external_data --data "
                       "'{\"url\": \"http://127.0.0.1:PORT/rates.json\"}'",
                       "enqueue send_welcome_email --idempotency-key welcome-1"))
    p.add_argument("name", help="the job's name (see `offload jobs`)")
    p.add_argument("--data", default="{}", help="the job's input as a JSON object")
    p.add_argument("--idempotency-key", default=None,
                   help="the same key and body return the same job")
    p.set_defaults(func=_enqueue)

    p = add_parser("status", parents=[common, waiting], help="a job's status, result or error",
                   description="GET /jobs/ID. With --wait, long-polls the API "
                               "(?wait=20&wait_for=progress) and shows each progress report.",
                   epilog=_examples("status JOB_ID", "status JOB_ID --wait --timeout 600"))
    p.add_argument("job_id")
    p.set_defaults(func=_status)

    p = add_parser("list", parents=[common], help="your jobs, newest first",
                   description="GET /jobs: your jobs, newest first, as a table (--json for "
                               "the API's items).",
                   epilog=_examples("list", "list --status failed --name fetch_external_data",
                                    "list --all --json"))
    p.add_argument("--status", choices=STATUSES, default=None, help="only jobs in this state")
    p.add_argument("--name", default=None, help="only this job")
    p.add_argument("--limit", type=int, default=20, help="jobs per page, 1-100 (default 20)")
    p.add_argument("--all", action="store_true", help="every page, not only the first")
    p.add_argument("--json", action="store_true", help="print the items as JSON")
    p.set_defaults(func=_list)

    p = add_parser("retry", parents=[common, waiting], help="enqueue a failed job again",
                   description="POST /jobs/ID/retry: a job that failed for good (a dead "
                               "letter, `offload list --status failed`) runs again as a new "
                               "job.",
                   epilog=_examples("retry JOB_ID", "retry JOB_ID --wait"))
    p.add_argument("job_id")
    p.set_defaults(func=_retry)

    p = add_parser("abort", parents=[common], help="abort a queued or running job",
                   epilog=_examples("abort JOB_ID"))
    p.add_argument("job_id")
    p.set_defaults(func=_abort)

    p = add_parser("download", parents=[common], help="save the files a job wrote",
                   description="Fetch every file of a finished job's `downloads` (presigned "
                               "URLs) into a directory.",
                   epilog=_examples("download JOB_ID", "download JOB_ID --out reports/"))
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, default=Path(), help="directory (default: here)")
    p.set_defaults(func=_download)

    p = add_parser("upload", parents=[common, waiting], help="upload an image to be processed",
                   description="POST /uploads, then the presigned POST of the file; prints "
                               "the process_uploaded_image job its S3 event starts.",
                   epilog=_examples("upload cat.png", "upload holiday.heic --wait"))
    p.add_argument("file", type=Path)
    p.add_argument("--content-type", default=None, help="default: from the file's suffix")
    p.set_defaults(func=_upload)

    p = add_parser("mail", parents=[common], help="e-mails the dev stack sent (newest first)",
                   description="The local inbox: every e-mail moto's SES accepted, with "
                               "recipient, subject and text (dev stack only).",
                   epilog=_examples("mail", "mail --to alice@example.com --last 1"))
    p.add_argument("--to", default=None, help="only e-mails to this address")
    p.add_argument("--last", type=int, default=None, help="only the N newest")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=_mail)

    p = add_parser("events", help="job events of the dev stack, as they happen",
                   description="Tail the dev stack's job events (queued, started, progress, "
                               "succeeded, failed, aborted): what EventBridge receives in AWS.",
                   epilog=_examples("events", "events --job 3f6c... --no-follow"))
    p.add_argument("--job", default=None, help="only this job's events")
    p.add_argument("--no-follow", action="store_true", help="print what is there and stop")
    p.add_argument("--json", action="store_true", help="print each event as JSON")
    p.set_defaults(func=_events)


# --- plumbing ---------------------------------------------------------------------------


def fail(message: str) -> int:
    print(f"offload: {message}", file=sys.stderr)
    return 2


def print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=True))


def client_for(args: argparse.Namespace) -> Any:
    """An ApiClient for ``--api-url``/``--token`` or the running stack; None without one."""
    from infra.local.client import ApiClient
    from infra.local.state import StackState

    if args.api_url and args.token:
        return ApiClient(args.api_url, args.token)
    state = StackState.load()
    if state is None:
        return None
    return ApiClient(args.api_url or state.api_url, args.token or state.token)


def run_client(args: argparse.Namespace, action: Action) -> int:
    """Run ``action(client)``; API errors print their JSON and exit 2."""
    import httpx

    from infra.local.client import ApiCallError

    client = client_for(args)
    if client is None:
        return fail(NO_STACK)
    with client:
        try:
            return action(client)
        except ApiCallError as exc:
            print_json(exc.body)
            return fail(str(exc))
        except httpx.HTTPError as exc:
            return fail(f"cannot reach the API at {client.base_url}: {exc}")


def finished_code(body: dict[str, Any]) -> int:
    """0 done, 1 failed/aborted/expired, 3 still running after --timeout."""
    from infra.local.client import FINISHED

    status = body.get("status")
    if status == "done":
        return 0
    return 1 if status in FINISHED else 3


def follow(client: Any, job_id: str, timeout: float) -> int:
    """Long-poll the job to the end, showing its progress on stderr; print it; exit code."""
    from infra.local.progress_view import ProgressView

    view = ProgressView(job_id, sys.stderr)
    try:
        final: dict[str, Any] = client.follow(job_id, timeout, view)
    finally:
        view.close()
    print_json(final)
    return finished_code(final)


# --- commands ---------------------------------------------------------------------------


def _enqueue(args: argparse.Namespace) -> int:
    from infra.local.client import job_id_of

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return fail(f"--data is not JSON: {exc}")
    if not isinstance(data, dict):
        return fail("--data must be a JSON object")

    def action(client: Any) -> int:
        body = client.enqueue(args.name, data, args.idempotency_key)
        print_json(body)
        return follow(client, job_id_of(body), args.timeout) if args.wait else 0

    return run_client(args, action)


def _status(args: argparse.Namespace) -> int:
    def action(client: Any) -> int:
        if args.wait:
            return follow(client, args.job_id, args.timeout)
        print_json(client.status(args.job_id))
        return 0

    return run_client(args, action)


def _abort(args: argparse.Namespace) -> int:
    def action(client: Any) -> int:
        print_json(client.abort(args.job_id))
        return 0

    return run_client(args, action)


def _retry(args: argparse.Namespace) -> int:
    from infra.local.client import job_id_of

    def action(client: Any) -> int:
        body = client.retry(args.job_id)
        print_json(body)
        return follow(client, job_id_of(body), args.timeout) if args.wait else 0

    return run_client(args, action)


def job_table(items: list[dict[str, Any]]) -> str:
    """One line per job: id, name, status, tries, created, error."""
    rows = [("ID", "NAME", "STATUS", "TRIES", "CREATED", "ERROR")]
    for item in items:
        created = str(item.get("created_at") or "")[:19].replace("T", " ")
        rows.append((str(item.get("id", "")), str(item.get("name", "")),
                     str(item.get("status", "")), str(item.get("tries", "")), created,
                     str(item.get("error") or "")[:80]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
                     .rstrip() + (f"  {row[5]}" if row[5] else "") for row in rows)


def _list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100:
        return fail("--limit must be between 1 and 100")

    def action(client: Any) -> int:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = client.list_jobs(status=args.status, name=args.name, limit=args.limit,
                                    next=cursor)
            items += page["items"]
            cursor = page.get("next")
            if not args.all or not cursor:
                break
        if args.json:
            print_json(items)
        else:
            print(job_table(items) if items else "no jobs")
            if cursor:
                print("(more: --all lists every page)", file=sys.stderr)
        return 0

    return run_client(args, action)


def _safe_name(name: str) -> str:
    """A download's name as a file in the output directory, never a path out of it."""
    base = Path(name).name
    return base if base not in ("", ".", "..") else "download"


def _download(args: argparse.Namespace) -> int:
    from infra.local.client import download_file

    def action(client: Any) -> int:
        view = client.status(args.job_id)
        downloads = view.get("downloads") or []
        if not downloads:
            return fail(f"job {args.job_id} is {view.get('status')} and has no files to "
                        f"download" + ("" if view.get("status") == "done" else " (yet)"))
        args.out.mkdir(parents=True, exist_ok=True)
        for item in downloads:
            target = args.out / _safe_name(str(item["name"]))
            size = download_file(str(item["url"]), target)
            print(f"{target}  {size} bytes  {item.get('content_type', '')}")
        return 0

    return run_client(args, action)


def content_type_of(path: Path) -> str | None:
    import mimetypes

    return IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]


def _upload(args: argparse.Namespace) -> int:
    from infra.local.client import post_presigned

    path: Path = args.file
    if not path.is_file():
        return fail(f"{path}: no such file")
    content_type = args.content_type or content_type_of(path)
    if content_type is None:
        return fail(f"cannot tell {path.name}'s content type: pass --content-type image/...")
    data = path.read_bytes()

    def action(client: Any) -> int:
        upload = client.create_upload(path.name, content_type, len(data))
        post_presigned(upload, path.name, data, content_type)
        job_id = str(upload["job_id"])
        print(f"uploaded {path.name} ({len(data)} bytes) as {upload['key']}; "
              f"job {job_id}", file=sys.stderr)
        # The job exists once the bucket's S3 event has been handled.
        found = client.await_job(job_id, timeout=min(args.timeout, 30.0))
        if not args.wait:
            print_json(found)
            return 0
        return follow(client, job_id, args.timeout)

    return run_client(args, action)


def _mail(args: argparse.Namespace) -> int:
    def action(client: Any) -> int:
        messages: list[dict[str, Any]] = client.call("GET", "/_dev/mail")
        if args.to:
            messages = [m for m in messages if args.to in m.get("to", [])]
        if args.last is not None:
            messages = messages[: args.last]
        if args.json:
            print_json(messages)
        elif not messages:
            print("no e-mails sent yet")
        else:
            print("\n\n".join(render_mail(m) for m in messages))
        return 0

    return run_client(args, action)


class _TextOfHtml(HTMLParser):
    """The readable text of an HTML e-mail: tags dropped, a line break per block."""

    BLOCKS = frozenset({"p", "br", "div", "tr", "li", "h1", "h2", "h3", "table"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def mail_text(body: str) -> str:
    """``body`` as plain text (moto keeps the HTML part of a message when it has one)."""
    if "<" not in body:
        return body.strip()
    parser = _TextOfHtml()
    parser.feed(body)
    lines = (line.strip() for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def render_mail(message: dict[str, Any]) -> str:
    to = ", ".join(message.get("to", []))
    text = mail_text(str(message.get("text", "")))
    return f"To: {to}\nSubject: {message.get('subject', '')}\n\n{text}"


def render_event(event: dict[str, Any]) -> str:
    d = event.get("detail", {})
    extra = ""
    if d.get("progress"):
        extra = f" {round(d['progress']['fraction'] * 100)}% {d['progress'].get('message', '')}"
    if d.get("error"):
        extra = f" {d['error'].get('type')}: {d['error'].get('message')}"
    return (f"{d.get('time', '')[11:23]} {d.get('state', ''):<9} {d.get('name', '')} "
            f"{d.get('job_id', '')} owner={d.get('owner', '')} tries={d.get('tries', 0)}{extra}")


def _events(args: argparse.Namespace) -> int:
    import json
    import time

    from infra.local.state import state_dir

    path = state_dir() / "events.jsonl"
    if not path.exists() and args.no_follow:
        return fail(NO_STACK if not (state_dir() / "dev.json").exists() else "no events yet")
    position = 0
    try:
        while True:
            if path.exists():
                with path.open() as source:
                    source.seek(position)
                    for line in source:
                        event = json.loads(line)
                        if args.job and event.get("detail", {}).get("job_id") != args.job:
                            continue
                        print(json.dumps(event) if args.json else render_event(event),
                              flush=True)
                    position = source.tell()
            if args.no_follow:
                return 0
            time.sleep(0.25)
    except KeyboardInterrupt:
        return 0
