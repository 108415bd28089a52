"""The sales report: order totals per day and currency over a date range, as CSV and PDF.

MongoDB does the counting (one aggregation; no order is loaded into Python), the files are
rendered in a worker thread, and both land in the results bucket under keys derived from
the job's owner and input, so a re-run overwrites the same two objects instead of adding new
ones, and no other caller's job can overwrite them. Enqueueing it over HTTP needs the admin
role (the API checks it): the totals are company-wide.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any

import anyio

from shared.blobs import blob_ref
from shared.jobs import SalesReportInput
from shared.models import Order
from worker.context import WorkerContext
from worker.progress import progress
from worker.retry_policy import current_job
from worker.tasks.base import job
from worker.templates.money import format_amount

CSV_HEADER = ("day", "currency", "orders", "amount_cents")


@dataclass(frozen=True)
class DayTotal:
    """One row of the report: a day's orders in one currency."""

    day: str
    currency: str
    orders: int
    amount_cents: int


def report_prefix(owner: str, inp: SalesReportInput) -> str:
    """``reports/{owner}/{start}_{end}[_{currency}]``: the same owner and input always name
    the same keys, and two owners never share one."""
    suffix = f"_{inp.currency}" if inp.currency else ""
    return f"reports/{owner}/{inp.start_date.isoformat()}_{inp.end_date.isoformat()}{suffix}"


def _range_match(inp: SalesReportInput) -> dict[str, Any]:
    start = datetime.combine(inp.start_date, time.min, tzinfo=UTC)
    end = datetime.combine(inp.end_date + timedelta(days=1), time.min, tzinfo=UTC)
    match: dict[str, Any] = {"created_at": {"$gte": start, "$lt": end}}
    if inp.currency:
        match["currency"] = inp.currency
    return match


async def daily_totals(inp: SalesReportInput) -> list[DayTotal]:
    """Orders and their sum per UTC day and currency, ordered by day then currency."""
    rows = await Order.aggregate([
        {"$match": _range_match(inp)},
        {"$group": {
            "_id": {
                "day": {"$dateToString": {"format": "%Y-%m-%d", "date": "$created_at"}},
                "currency": "$currency",
            },
            "orders": {"$sum": 1},
            "amount": {"$sum": "$amount_cents"},
        }},
        {"$sort": {"_id.day": 1, "_id.currency": 1}},
    ]).to_list()
    return [DayTotal(r["_id"]["day"], r["_id"]["currency"], int(r["orders"]), int(r["amount"]))
            for r in rows]


def grand_totals(rows: list[DayTotal]) -> dict[str, dict[str, int]]:
    """Per currency (amounts in different currencies are never added together)."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = totals.setdefault(row.currency, {"orders": 0, "amount_cents": 0})
        entry["orders"] += row.orders
        entry["amount_cents"] += row.amount_cents
    return dict(sorted(totals.items()))


def render_csv(rows: list[DayTotal]) -> bytes:
    """One line per day and currency; amounts stay in minor units (exact, parseable)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows((r.day, r.currency, r.orders, r.amount_cents) for r in rows)
    return buffer.getvalue().encode("utf-8")


def render_pdf(inp: SalesReportInput, rows: list[DayTotal]) -> bytes:
    """A printable report: the range, a table of the rows, then totals per currency."""
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(f"Sales {inp.start_date} to {inp.end_date}")
    pdf.set_creator("Offload")
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(text=f"Sales report {inp.start_date} to {inp.end_date}", new_x="LMARGIN",
             new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    scope = f"Currency: {inp.currency}" if inp.currency else "All currencies"
    pdf.cell(text=f"{scope}. Days in UTC.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    if not rows:
        pdf.cell(text="No orders in this range.", new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())
    _pdf_table(pdf, ("Day", "Currency", "Orders", "Amount"),
               [(r.day, r.currency, str(r.orders), format_amount(r.amount_cents, r.currency))
                for r in rows])
    pdf.ln(6)
    pdf.set_font("Helvetica", style="B", size=12)
    pdf.cell(text="Totals", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    _pdf_table(pdf, ("Currency", "Orders", "Amount"),
               [(cur, str(t["orders"]), format_amount(t["amount_cents"], cur))
                for cur, t in grand_totals(rows).items()])
    return bytes(pdf.output())


def _pdf_table(pdf: Any, header: tuple[str, ...], body: list[tuple[str, ...]]) -> None:
    with pdf.table(text_align="RIGHT", first_row_as_headings=True) as table:
        for values in (header, *body):
            row = table.row()
            for value in values:
                row.cell(value)


@job("generate_sales_report")
async def generate_sales_report(ctx: WorkerContext, inp: SalesReportInput) -> dict[str, Any]:
    await progress(0.05, "totalling orders")
    rows = await daily_totals(inp)
    await progress(0.4, f"rendering CSV and PDF ({len(rows)} rows)")
    csv_bytes = await anyio.to_thread.run_sync(render_csv, rows)
    pdf_bytes = await anyio.to_thread.run_sync(partial(render_pdf, inp, rows))
    await progress(0.7, "storing the files")
    owner = current_job().owner
    prefix = report_prefix(owner, inp)
    csv_blob = await ctx.blobs.put_bytes(f"{prefix}/sales.csv", csv_bytes,
                                         "text/csv; charset=utf-8", owner=owner, kind="report")
    pdf_blob = await ctx.blobs.put_bytes(f"{prefix}/sales.pdf", pdf_bytes,
                                         "application/pdf", owner=owner, kind="report")
    await progress(1.0, "done")
    return {
        "bucket": csv_blob.bucket,
        "csv_key": csv_blob.key,
        "pdf_key": pdf_blob.key,
        "rows": len(rows),
        "totals": grand_totals(rows),
        "files": [blob_ref(csv_blob, "sales.csv"), blob_ref(pdf_blob, "sales.pdf")],
    }

