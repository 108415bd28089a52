"""generate_sales_report through the queue: Mongo aggregation in, CSV and PDF in moto's S3."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.aws import s3_client
from shared.config import Settings
from shared.models import Blob, Order

pytestmark = pytest.mark.anyio


def read_object(settings: Settings, bucket: str, key: str) -> tuple[bytes, str]:
    response = s3_client(settings).get_object(Bucket=bucket, Key=key)
    return response["Body"].read(), response["ContentType"]


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


async def add_order(amount: int, currency: str, at: datetime) -> None:
    await Order(user_id="0" * 24, amount_cents=amount, currency=currency,
                reference=uuid.uuid4().hex, created_at=at).insert()


async def seed_march() -> None:
    day1 = datetime(2024, 3, 1, tzinfo=UTC)
    await add_order(1000, "EUR", day1)  # first instant of the range: in
    await add_order(250, "EUR", day1 + timedelta(hours=10))
    await add_order(700, "USD", day1 + timedelta(hours=23, minutes=59, seconds=59))
    await add_order(5, "EUR", day1 + timedelta(days=2, hours=3))
    await add_order(99, "EUR", day1 - timedelta(microseconds=1000))  # Feb 29: out
    await add_order(77, "USD", day1 + timedelta(days=3))  # 4 March, 00:00: out


async def run(queue: Any, payload: dict[str, Any]) -> Any:
    job = await queue.enqueue("generate_sales_report", payload, owner="u1")
    return await queue.wait(job.id, "u1", timeout=30)


async def test_report_totals_per_day_and_currency_as_csv_and_pdf(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN orders inside and just outside 1-3 March
    await seed_march()
    # WHEN the report for 1-3 March runs
    view = await run(queue, {"start_date": "2024-03-01", "end_date": "2024-03-03"})
    # THEN it reports three day/currency rows and per-currency totals
    assert view.status == "done", view.error
    result = view.result
    assert result["csv_key"] == "reports/u1/2024-03-01_2024-03-03/sales.csv"
    assert result["pdf_key"] == "reports/u1/2024-03-01_2024-03-03/sales.pdf"
    assert result["bucket"] == settings.results_bucket
    assert result["rows"] == 3
    assert result["totals"] == {"EUR": {"orders": 3, "amount_cents": 1255},
                                "USD": {"orders": 1, "amount_cents": 700}}
    # AND the CSV in S3 holds those rows
    data, content_type = read_object(settings, result["bucket"], result["csv_key"])
    assert content_type.startswith("text/csv")
    assert csv_rows(data) == [
        {"day": "2024-03-01", "currency": "EUR", "orders": "2", "amount_cents": "1250"},
        {"day": "2024-03-01", "currency": "USD", "orders": "1", "amount_cents": "700"},
        {"day": "2024-03-03", "currency": "EUR", "orders": "1", "amount_cents": "5"},
    ]
    # AND the PDF is a PDF
    pdf, pdf_type = read_object(settings, result["bucket"], result["pdf_key"])
    assert pdf.startswith(b"%PDF-")
    assert pdf_type == "application/pdf"
    assert pdf.rstrip().endswith(b"%%EOF")
    # AND both objects are tracked as uploaded blobs
    blobs = await Blob.find(Blob.kind == "report").to_list()
    assert sorted((b.key, b.status) for b in blobs) == [
        (result["csv_key"], "uploaded"), (result["pdf_key"], "uploaded")]


async def test_a_currency_filter_changes_rows_and_keys(
    worker: Any, queue: Any, settings: Settings
) -> None:
    await seed_march()
    view = await run(
        queue, {"start_date": "2024-03-01", "end_date": "2024-03-04", "currency": "USD"}
    )
    assert view.status == "done", view.error
    assert view.result["csv_key"] == "reports/u1/2024-03-01_2024-03-04_USD/sales.csv"
    assert view.result["totals"] == {"USD": {"orders": 2, "amount_cents": 777}}
    data, _ = read_object(settings, view.result["bucket"], view.result["csv_key"])
    assert [(r["day"], r["currency"], r["amount_cents"]) for r in csv_rows(data)] == [
        ("2024-03-01", "USD", "700"), ("2024-03-04", "USD", "77")]


async def test_an_empty_range_is_a_valid_report_and_a_rerun_overwrites_it(
    worker: Any, queue: Any, settings: Settings
) -> None:
    payload = {"start_date": "2023-01-01", "end_date": "2023-01-31"}
    first = await run(queue, payload)
    second = await run(queue, payload)
    for view in (first, second):
        assert view.status == "done", view.error
        assert view.result["rows"] == 0
        assert view.result["totals"] == {}
    assert first.result == second.result
    data, _ = read_object(settings, first.result["bucket"], first.result["csv_key"])
    assert data == b"day,currency,orders,amount_cents\r\n"
    pdf, _ = read_object(settings, first.result["bucket"], first.result["pdf_key"])
    assert pdf.startswith(b"%PDF-")
    # Same keys, so the re-run updated the two blobs instead of adding two more
    assert await Blob.find(Blob.kind == "report").count() == 2


async def test_a_reversed_range_is_refused_before_it_is_queued(queue: Any) -> None:
    with pytest.raises(ValidationError, match="end_date must not be before start_date"):
        await queue.enqueue(
            "generate_sales_report", {"start_date": "2024-03-02", "end_date": "2024-03-01"},
            owner="u1",
        )
