"""What the client commands print: the catalogue (`offload jobs`), the job table
(`offload list`), the progress display of `status --wait`, e-mails (`offload mail`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from infra.local.catalogue_view import field_type, input_fields, render
from infra.local.client_cli import content_type_of, job_table, render_mail
from infra.local.progress_view import ProgressView, bar, describe
from offload.cli import main
from shared.jobs import CATALOGUE


def test_jobs_lists_every_catalogue_job_with_who_may_enqueue_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN `offload jobs` runs
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    # THEN every job is a block headed by its name, saying how it is enqueued
    headers = {line.split("  -  ")[0]: line.split("  -  ")[1]
               for line in out.splitlines() if "  -  " in line}
    assert set(headers) == set(CATALOGUE)
    assert headers["generate_sales_report"].startswith("over HTTP")
    assert "role admin" in headers["generate_sales_report"]
    assert headers["validate_order"] == "internal: a step of place_order"
    assert headers["send_daily_digest"].startswith("internal")


def test_jobs_shows_input_fields_with_types_and_optional_marks() -> None:
    text = render()
    report = text[text.index("generate_sales_report  -"):].split("\n\n")[0]
    assert "  start_date: date YYYY-MM-DD" in report
    assert "  currency?: string matching ^[A-Z]{3}$" in report
    assert "steps: validate_order -> process_order -> notify_order" in text
    sweep = {n: t for n, t, _ in input_fields(CATALOGUE["sweep_pending_blobs"])}
    assert sweep["older_than_hours"] == "integer >= 1, <= 8760 (default 24)"


def test_jobs_http_lists_only_what_callers_may_enqueue() -> None:
    shown = {line.split("  -  ")[0] for line in render(http_only=True).splitlines()
             if "  -  " in line}
    assert shown == {n for n, s in CATALOGUE.items() if s.http_enqueueable}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "date"}, "date YYYY-MM-DD"),
        ({"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}]},
         "integer > 0"),
        ({"enum": ["low", "high"]}, 'one of "low", "high"'),
        ({"type": "string", "format": "uri", "maxLength": 9}, "URL, 0-9 chars"),
    ],
)
def test_field_types_read_as_a_person_writes_them(schema: dict[str, object],
                                                  expected: str) -> None:
    assert field_type(schema) == expected


def test_job_table_has_one_aligned_line_per_job() -> None:
    table = job_table([
        {"id": "a" * 32, "name": "fetch_external_data", "status": "failed", "tries": 4,
         "created_at": "2026-12-01T10:00:00.123+00:00", "error": "FetchRefused: host x"},
        {"id": "b" * 32, "name": "place_order", "status": "done", "tries": 1,
         "created_at": "2026-12-01T09:00:00+00:00", "error": None},
    ]).splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "TRIES", "CREATED", "ERROR"]
    assert table[1].split()[:6] == ["a" * 32, "fetch_external_data", "failed", "4",
                                    "2026-12-01", "10:00:00"]
    assert table[1].endswith("FetchRefused: host x")
    assert table[2].index("done") == table[1].index("failed")


def test_progress_on_a_terminal_redraws_one_bar_in_place() -> None:
    # GIVEN a terminal
    out = io.StringIO()
    view = ProgressView("j1", out, live=True)
    # WHEN the job reports progress twice and finishes
    view({"status": "running", "progress": {"fraction": 0.25, "message": "reading"}})
    view({"status": "running", "progress": {"fraction": 0.5, "message": "rendering"}})
    view({"status": "done", "progress": {"fraction": 0.5, "message": "rendering"}})
    view.close()
    # THEN each state redraws the same line, and the last is full
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 3
    assert text.count("\n") == 1
    assert f"{bar(0.25)} running 25% reading" in text
    assert text.rstrip("\n").endswith(f"{bar(1.0)} done 50% rendering")


def test_progress_in_a_pipe_is_one_plain_line_per_change() -> None:
    out = io.StringIO()
    view = ProgressView("j1", out, live=False)
    view({"status": "queued", "progress": None})
    view({"status": "failed", "progress": None,
          "error": {"type": "FetchRefused", "message": "not allowed"}})
    view.close()
    assert out.getvalue().splitlines() == [
        "job j1: queued", "job j1: failed FetchRefused: not allowed"]
    assert "\x1b" not in out.getvalue()


def test_bar_is_bounded() -> None:
    assert bar(-1) == "[" + "-" * 24 + "]"
    assert bar(2) == "[" + "#" * 24 + "]"
    assert describe({"status": "running", "progress": {"fraction": 0.4,
                                                       "message": "x"}}) == "running 40% x"


def test_upload_content_types_come_from_the_suffix() -> None:
    assert content_type_of(Path("IMG_0001.HEIC")) == "image/heic"
    assert content_type_of(Path("cat.png")) == "image/png"
    assert content_type_of(Path("photo.avif")) == "image/avif"


def test_a_mail_reads_like_an_e_mail() -> None:
    text = render_mail({"to": ["alice@example.com"], "subject": "Welcome",
                        "text": "Hello Alice\n"})
    assert text == "To: alice@example.com\nSubject: Welcome\n\nHello Alice"


def test_an_html_mail_is_shown_as_text() -> None:
    html = ('<!doctype html><html><body style="x"><p>Hello Alice,</p><p>welcome &amp; '
            "enjoy.<br>Line two</p><table><tr><td>EUR</td><td>12.50</td></tr></table>"
            "</body></html>")
    text = render_mail({"to": ["a@example.com"], "subject": "Hi", "text": html})
    assert text.split("\n\n", 1)[1] == "Hello Alice,\nwelcome & enjoy.\nLine two\nEUR 12.50"


def test_client_commands_without_a_stack_say_how_to_start_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OFFLOAD_STATE_DIR", str(tmp_path))
    for argv in (["list"], ["retry", "x"], ["download", "x"], ["mail"],
                 ["upload", __file__]):
        assert main(argv) == 2
        assert "./infra/local/offload dev" in capsys.readouterr().err


def test_upload_refuses_a_missing_file_or_unknown_type(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", str(tmp_path / "nope.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    odd = tmp_path / "data.unknownsuffix"
    odd.write_bytes(b"x")
    assert main(["upload", str(odd)]) == 2
    assert "--content-type" in capsys.readouterr().err
