"""The e-mails Offload sends, each as a subject plus HTML and plain-text bodies.

Values are substituted with ``string.Template``; in the HTML body every value is escaped
first, so user-controlled text (a display name) can never become markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from string import Template

from worker.templates.money import format_amount

_PAGE = Template(
    '<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">'
    "$content<p>— Offload</p></body></html>"
)


@dataclass(frozen=True)
class Message:
    """One e-mail, ready for ``Mailer.send``."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CurrencyTotal:
    """Orders in one currency: how many, and their sum in minor units."""

    currency: str
    orders: int
    amount_cents: int


def _page(html_body: str, text_body: str, *, html_tail: str = "", text_tail: str = "",
          **values: str) -> tuple[str, str]:
    """Both bodies; ``html_tail`` is markup the caller has already escaped."""
    escaped = {name: escape(value) for name, value in values.items()}
    html = _PAGE.substitute(content=Template(html_body).substitute(escaped) + html_tail)
    text = Template(text_body).substitute(values) + text_tail + "\n-- Offload\n"
    return html, text


def welcome(display_name: str) -> Message:
    html, text = _page(
        "<p>Hello $name,</p><p>welcome to Offload. Your account is ready.</p>",
        "Hello $name,\n\nwelcome to Offload. Your account is ready.\n",
        name=display_name,
    )
    return Message("Welcome to Offload", html, text)


def password_reset(display_name: str, link: str) -> Message:
    html, text = _page(
        '<p>Hello $name,</p><p>someone asked to reset your password. If it was you, '
        '<a href="$link">choose a new password</a>.</p>'
        "<p>If it was not, ignore this message: your password stays as it is.</p>",
        "Hello $name,\n\nsomeone asked to reset your password. If it was you, open this "
        "link to choose a new one:\n$link\n\nIf it was not, ignore this message: your "
        "password stays as it is.\n",
        name=display_name,
        link=link,
    )
    return Message("Reset your Offload password", html, text)


def daily_digest(display_name: str, day: date, totals: Sequence[CurrencyTotal]) -> Message:
    lines = [f"{t.orders} order{'s' if t.orders != 1 else ''}: "
             f"{format_amount(t.amount_cents, t.currency)}" for t in totals]
    html, text = _page(
        "<p>Hello $name,</p><p>your orders on $day (UTC):</p>",
        "Hello $name,\n\nyour orders on $day (UTC):\n",
        html_tail="<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>",
        text_tail="".join(f"- {line}\n" for line in lines),
        name=display_name,
        day=day.isoformat(),
    )
    return Message(f"Your Offload orders on {day.isoformat()}", html, text)


def order_confirmation(display_name: str, reference: str, amount_cents: int,
                       currency: str) -> Message:
    amount = format_amount(amount_cents, currency)
    html, text = _page(
        "<p>Hello $name,</p><p>we received your order <strong>$reference</strong> "
        "of $amount. Thank you.</p>",
        "Hello $name,\n\nwe received your order $reference of $amount. Thank you.\n",
        name=display_name,
        reference=reference,
        amount=amount,
    )
    return Message(f"Order {reference} confirmed", html, text)
