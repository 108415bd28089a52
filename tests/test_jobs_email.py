"""E-mail jobs through the queue: a real worker, moto's SES over HTTP, the Mongo stand-in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import anyio
import pytest

from infra.local.testing import sent_emails
from shared.config import Settings
from shared.models import Order, User
from tests.support import address
from worker.accounts import NO_ACCOUNT
from worker.tasks import emails
from worker.tasks.emails import previous_utc_day

pytestmark = pytest.mark.anyio


async def make_user(name: str, *, opt_in: bool = True) -> User:
    user = User(email=address(name), display_name=name, digest_opt_in=opt_in,
                subject=f"u-{uuid.uuid4().hex}")
    await user.insert()
    return user


async def test_welcome_email_is_sent_to_the_user(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN a user whose display name contains markup
    user = await make_user("<b>Ada</b>")
    # WHEN the welcome job runs for that user's subject
    owner = str(user.subject)
    job = await queue.enqueue("send_welcome_email", {}, owner=owner)
    view = await queue.wait(job.id, owner, timeout=30)
    # THEN it is done, and SES holds exactly one message with the name escaped
    assert view.status == "done", view.error
    assert view.result["user_id"] == str(user.id)
    sent = sent_emails(moto_endpoint, user.email)
    assert [m["id"] for m in sent] == [view.result["message_id"]]
    assert sent[0]["subject"] == "Welcome to Offload"
    assert "&lt;b&gt;Ada&lt;/b&gt;" in sent[0]["body"]
    assert "<b>Ada</b>" not in sent[0]["body"]


async def test_welcome_email_for_a_caller_without_account_fails_at_once_as_a_dead_letter(
    worker: Any, queue: Any
) -> None:
    # GIVEN a caller with no user and no e-mail claim to create one from
    owner = f"u-{uuid.uuid4().hex}"
    # WHEN the caller asks for the welcome e-mail
    job = await queue.enqueue("send_welcome_email", {}, owner=owner)
    view = await queue.wait(job.id, owner, timeout=30)
    # THEN it fails at once, readably, and is a dead letter
    assert view.status == "failed"
    assert view.error == {"type": "PermanentJobError", "message": NO_ACCOUNT}
    assert view.tries == 1
    letters = {d.id: d for d in await queue.dead_letters(owner)}
    assert letters[job.id].name == "send_welcome_email"
    assert letters[job.id].tries == 1
    assert letters[job.id].payload == {}
    assert letters[job.id].error == NO_ACCOUNT


async def test_first_job_creates_the_callers_user_from_the_token_claims(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN a caller with no user yet, whose token carried e-mail and name claims
    owner = f"u-{uuid.uuid4().hex}"
    email = address("newcomer")
    # WHEN the caller asks for the welcome e-mail
    job = await queue.enqueue("send_welcome_email", {}, owner=owner,
                              profile={"email": email, "name": "Newcomer"})
    view = await queue.wait(job.id, owner, timeout=30)
    # THEN the worker created the user, bound to the caller's subject, and greeted it
    assert view.status == "done", view.error
    user = await User.find_one(User.subject == owner)
    assert user is not None
    assert (user.email, user.display_name) == (email, "Newcomer")
    assert view.result["user_id"] == str(user.id)
    assert [m["id"] for m in sent_emails(moto_endpoint, email)] == [view.result["message_id"]]


async def test_password_reset_mails_the_link_once_per_token(
    worker: Any, queue: Any, moto_endpoint: str, settings: Settings
) -> None:
    # GIVEN a user and a reset token
    user = await make_user("Grace")
    token = "tok_" + uuid.uuid4().hex
    payload = {"user_id": str(user.id), "token": token}
    # WHEN the same reset is run twice (as an at-least-once redelivery would)
    first = await queue.enqueue("send_password_reset", payload, owner="u1")
    first_view = await queue.wait(first.id, "u1", timeout=30)
    second = await queue.enqueue("send_password_reset", payload, owner="u1")
    second_view = await queue.wait(second.id, "u1", timeout=30)
    # THEN both are done with the same message, and SES sent one e-mail holding the link
    assert first_view.status == second_view.status == "done"
    assert first_view.result["message_id"] == second_view.result["message_id"]
    sent = sent_emails(moto_endpoint, user.email)
    assert len(sent) == 1
    assert f'href="{settings.password_reset_url_base}{token}"' in sent[0]["body"]
    # AND a new token is a new e-mail
    other = {"user_id": str(user.id), "token": "tok_" + uuid.uuid4().hex}
    third = await queue.wait(
        (await queue.enqueue("send_password_reset", other, owner="u1")).id, "u1", timeout=30
    )
    assert third.status == "done"
    assert len(sent_emails(moto_endpoint, user.email)) == 2


async def _order(user: User, amount: int, currency: str, at: datetime) -> None:
    await Order(user_id=str(user.id), amount_cents=amount, currency=currency,
                reference=uuid.uuid4().hex, created_at=at).insert()


async def test_daily_digest_counts_sent_skipped_and_failed_and_does_not_resend(
    worker: Any, queue: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two users, so five opted-in users take three pages.
    monkeypatch.setattr(emails, "DIGEST_BATCH_SIZE", 2)
    day = previous_utc_day()
    noon = datetime.combine(day, time(12), tzinfo=UTC)
    today = noon + timedelta(days=1)
    # GIVEN users with orders yesterday, one without, one opted out, one unmailable
    ada = await make_user("Ada")
    await _order(ada, 1000, "EUR", noon)
    await _order(ada, 234, "EUR", noon + timedelta(hours=11, minutes=59))
    await _order(ada, 500, "JPY", noon - timedelta(hours=12))
    bob = await make_user("Bob")
    await _order(bob, 700, "USD", noon)
    await _order(bob, 900, "USD", today)  # today: not in yesterday's digest
    cy = await make_user("Cy")  # no orders yesterday: skipped
    await _order(cy, 100, "EUR", noon - timedelta(days=1))
    dee = await make_user("Dee", opt_in=False)  # not asked: not counted at all
    await _order(dee, 100, "EUR", noon)
    # An address stored before validation existed: SES is never asked, the send fails.
    bad = await User.get_pymongo_collection().insert_one(
        {"email": "not-an-address", "display_name": "Eve", "digest_opt_in": True,
         "created_at": noon}
    )
    await Order(user_id=str(bad.inserted_id), amount_cents=100, currency="EUR",
                reference=uuid.uuid4().hex, created_at=noon).insert()
    fay = await make_user("Fay")
    await _order(fay, 1, "GBP", noon)

    # WHEN the digest runs
    job = await queue.enqueue("send_daily_digest", {}, owner="u1")
    view = await queue.wait(job.id, "u1", timeout=30)

    # THEN Ada, Bob and Fay got one digest each, Cy was skipped, Eve's failed
    assert view.status == "done", view.error
    assert view.result == {"day": day.isoformat(), "sent": 3, "skipped": 1, "failed": 1}
    [ada_mail] = sent_emails(moto_endpoint, ada.email)
    assert ada_mail["subject"] == f"Your Offload orders on {day.isoformat()}"
    assert "<li>2 orders: 12.34 EUR</li>" in ada_mail["body"]
    assert "<li>1 order: 500 JPY</li>" in ada_mail["body"]
    [bob_mail] = sent_emails(moto_endpoint, bob.email)
    assert "<li>1 order: 7.00 USD</li>" in bob_mail["body"]
    assert "9.00" not in bob_mail["body"]
    assert sent_emails(moto_endpoint, cy.email) == []
    assert sent_emails(moto_endpoint, dee.email) == []

    # WHEN it runs again for the same day
    again = await queue.wait(
        (await queue.enqueue("send_daily_digest", {}, owner="u1")).id, "u1", timeout=30
    )
    # THEN nobody is mailed twice; the failed user is tried again (and fails again)
    assert again.status == "done", again.error
    assert again.result == {"day": day.isoformat(), "sent": 0, "skipped": 4, "failed": 1}
    assert len(sent_emails(moto_endpoint, ada.email)) == 1


async def test_daily_digest_with_an_unverified_sender_fails_the_job(
    settings: Settings, mongo: Any, queue: Any
) -> None:
    # A sender SES refuses fails every send alike: the job fails instead of counting each.
    from worker.app import build_worker

    unverified = settings.model_copy(update={"ses_sender": "nobody@unverified.example.net"})
    user = await make_user("Hal")
    await _order(user, 100, "EUR", datetime.combine(previous_utc_day(), time(9), tzinfo=UTC))
    w = build_worker(unverified, concurrency=2)
    w.handle_signals = False
    async with anyio.create_task_group() as tg:
        await tg.start(w.run_async)
        job = await queue.enqueue("send_daily_digest", {}, owner="u1")
        view = await queue.wait(job.id, "u1", timeout=30)
        tg.cancel_scope.cancel()
    assert view.status == "failed"
    assert view.error is not None
    assert view.error["type"] == "SenderNotVerified"
    assert view.tries == 1
