"""A caller acts only on their own data (issue 12, "identity reaches the data"): jobs
enqueued over HTTP act on the caller's own User, errors reveal nothing of other users,
references are unique per user, e-mails are sent once, and outputs are keyed per owner.

Two callers (two token subjects) each bound to their own User; a real worker, the Mongo
stand-in and moto's SES/S3 over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from beanie import PydanticObjectId

from infra.local.testing import sent_emails
from shared.aws import s3_client
from shared.config import Settings
from shared.models import Order, User
from shared.queue import Keys
from tests.support import address
from tests.test_api import Api, LambdaContainer, assert_error, http_event, to_response
from tests.test_api import LambdaContext as FakeLambdaContext

pytestmark = pytest.mark.anyio

REPORT = {"start_date": "2024-03-01", "end_date": "2024-03-03"}


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    box = LambdaContainer(settings)
    yield Api(box)
    box.close()


async def bound_user(name: str) -> User:
    """A user bound to a fresh token subject."""
    user = User(email=address(name), display_name=name, subject=f"{name}-{uuid.uuid4().hex}")
    return await user.insert()


def order(reference: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"amount_cents": 4250, "currency": "EUR",
            "reference": reference or f"ref-{uuid.uuid4().hex[:12]}", **extra}


async def test_an_order_over_http_cannot_name_another_users_account(
    api: Api, worker: Any, queue: Any
) -> None:
    # GIVEN Alice and Bob, each bound to their token
    alice, bob = await bound_user("alice"), await bound_user("bob")
    # WHEN Bob places an order naming Alice's user id
    squat = api("POST", "/jobs/place_order", sub=bob.subject,
                body=order(user_id=str(alice.id), amount_cents=99_999_999))
    # THEN it is refused, and nothing was ordered on Alice's account
    assert_error(squat, 422, "validation_failed")
    assert await Order.find(Order.user_id == str(alice.id)).count() == 0
    # AND Bob's own order (no user id) lands on Bob's account
    mine = order()
    created = api("POST", "/jobs/place_order", sub=bob.subject, body=mine)
    assert created.status == 202, created.text
    view = await queue.wait(created.json["id"], bob.subject, timeout=30)
    assert view.status == "done", view.error
    stored = await Order.find_one(Order.reference == mine["reference"])
    assert stored is not None
    assert stored.user_id == str(bob.id)


async def test_a_welcome_email_over_http_greets_only_the_caller(
    api: Api, worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN Alice and Bob
    alice, bob = await bound_user("alice"), await bound_user("bob")
    # WHEN Bob asks for a welcome e-mail to Alice's user id
    aimed = api("POST", "/jobs/send_welcome_email", sub=bob.subject,
                body={"user_id": str(alice.id)})
    # THEN it is refused
    assert_error(aimed, 422, "validation_failed")
    # AND Bob's own request greets Bob, and Alice receives nothing
    created = api("POST", "/jobs/send_welcome_email", sub=bob.subject, body={})
    assert created.status == 202, created.text
    view = await queue.wait(created.json["id"], bob.subject, timeout=30)
    assert view.status == "done", view.error
    assert view.result["user_id"] == str(bob.id)
    assert len(sent_emails(moto_endpoint, bob.email)) == 1
    assert sent_emails(moto_endpoint, alice.email) == []


async def test_the_caller_profile_claims_create_the_callers_user(
    api: Api, worker: Any, queue: Any
) -> None:
    # GIVEN a token for a subject with no user yet, carrying e-mail and name claims
    subject, email = f"new-{uuid.uuid4().hex}", address("newcomer")
    event = http_event("POST", "/jobs/send_welcome_email", body={}, sub=subject)
    event["requestContext"]["authorizer"]["jwt"]["claims"].update(email=email, name="Newcomer")
    # WHEN the caller enqueues a job over HTTP
    created = to_response(api.box.invoke(api.handler, event, FakeLambdaContext()))
    assert created.status == 202, created.text
    view = await queue.wait(created.json["id"], subject, timeout=30)
    # THEN the worker created the caller's user, bound to the token's subject
    assert view.status == "done", view.error
    user = await User.find_one(User.subject == subject)
    assert user is not None
    assert (user.email, user.display_name, str(user.id)) == (
        email, "Newcomer", view.result["user_id"])


async def test_another_users_order_and_a_missing_one_fail_alike(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN Alice's order
    alice, bob = await bound_user("alice"), await bound_user("bob")
    theirs = await Order(user_id=str(alice.id), amount_cents=999, currency="EUR",
                         reference="alice-1", status="processed").insert()
    missing = str(PydanticObjectId())
    # WHEN a confirmation step for Bob names Alice's order, and another a missing order
    errors = []
    for order_id in (str(theirs.id), missing):
        step = {"order_id": order_id, "user_id": str(bob.id), "reference": "alice-1"}
        job = await queue.enqueue("notify_order", step, owner=bob.subject)
        view = await queue.wait(job.id, bob.subject, timeout=30)
        assert view.status == "failed"
        errors.append(view.error)
    # THEN both fail with the same message, naming no id, and Alice was not e-mailed
    assert errors[0] == errors[1]
    assert str(theirs.id) not in str(errors[0]) and missing not in str(errors[1])
    assert sent_emails(moto_endpoint, alice.email) == []


async def test_a_caller_without_account_learns_nothing_about_other_users(
    worker: Any, queue: Any
) -> None:
    # GIVEN an existing user, and a caller with no account
    alice = await bound_user("alice")
    stranger = f"stranger-{uuid.uuid4().hex}"
    # WHEN the stranger asks for a welcome e-mail
    job = await queue.enqueue("send_welcome_email", {}, owner=stranger)
    view = await queue.wait(job.id, stranger, timeout=30)
    # THEN it fails with a message that names no user id
    assert view.status == "failed"
    assert view.error is not None
    assert str(alice.id) not in view.error["message"]
    assert "no user" not in view.error["message"]


async def test_a_reference_cannot_be_squatted_by_another_user(
    worker: Any, queue: Any
) -> None:
    # GIVEN Bob placed an order under the reference Alice is about to use
    alice, bob = await bound_user("alice"), await bound_user("bob")
    reference = f"inv-{uuid.uuid4().hex[:8]}"
    first = await queue.enqueue("place_order", order(reference, amount_cents=1), owner=bob.subject)
    assert (await queue.wait(first.id, bob.subject, timeout=30)).status == "done"
    # WHEN Alice places her order under the same reference
    job = await queue.enqueue("place_order", order(reference), owner=alice.subject)
    view = await queue.wait(job.id, alice.subject, timeout=30)
    # THEN it is hers: recorded on her account with her amount, Bob's left as it was
    assert view.status == "done", view.error
    found = {o.user_id: o.amount_cents
             for o in await Order.find(Order.reference == reference).to_list()}
    assert found == {str(alice.id): 4250, str(bob.id): 1}


async def test_the_welcome_email_is_sent_once_even_after_the_idempotency_window(
    worker: Any, queue: Any, moto_endpoint: str, settings: Settings
) -> None:
    # GIVEN a user who was welcomed
    user = await bound_user("ada")
    first = await queue.enqueue("send_welcome_email", {}, owner=user.subject)
    first_view = await queue.wait(first.id, user.subject, timeout=30)
    assert first_view.status == "done", first_view.error
    # WHEN the Redis idempotency window has passed (every "sent" marker is gone)
    redis = queue.redis
    prefix = Keys(settings.queue_name).prefix
    stale = [key async for key in redis.scan_iter(match=f"{prefix}sent:*")]
    if stale:
        await redis.delete(stale)
    # AND the welcome e-mail is asked for again
    again = await queue.enqueue("send_welcome_email", {}, owner=user.subject)
    again_view = await queue.wait(again.id, user.subject, timeout=30)
    # THEN no second e-mail is sent: the first one's id is returned
    assert again_view.status == "done", again_view.error
    assert again_view.result["message_id"] == first_view.result["message_id"]
    assert len(sent_emails(moto_endpoint, user.email)) == 1


async def test_concurrent_welcome_jobs_send_one_email(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN a user not welcomed yet
    user = await bound_user("grace")
    # WHEN three welcome jobs for that user are enqueued at once
    jobs = [await queue.enqueue("send_welcome_email", {}, owner=user.subject) for _ in range(3)]
    views = [await queue.wait(job.id, user.subject, timeout=60) for job in jobs]
    # THEN all are done with the same message id, and one e-mail was sent
    assert [v.status for v in views] == ["done"] * 3, [v.error for v in views]
    assert len({v.result["message_id"] for v in views}) == 1
    assert len(sent_emails(moto_endpoint, user.email)) == 1


async def test_two_owners_reports_of_one_range_never_share_an_object(
    worker: Any, queue: Any, settings: Settings
) -> None:
    # GIVEN an admin's report over a range
    owners = (f"admin-a-{uuid.uuid4().hex}", f"admin-b-{uuid.uuid4().hex}")
    first = await queue.enqueue("generate_sales_report", REPORT, owner=owners[0])
    first_view = await queue.wait(first.id, owners[0], timeout=30)
    assert first_view.status == "done", first_view.error
    s3 = s3_client(settings)
    bucket = first_view.result["bucket"]
    before = s3.head_object(Bucket=bucket, Key=first_view.result["csv_key"])["ETag"]
    # WHEN another owner's report over the same range runs, after new orders came in
    await Order(user_id="0" * 24, amount_cents=5, currency="EUR", reference=uuid.uuid4().hex,
                created_at=datetime(2024, 3, 2, 12, tzinfo=UTC)).insert()
    second = await queue.enqueue("generate_sales_report", REPORT, owner=owners[1])
    second_view = await queue.wait(second.id, owners[1], timeout=30)
    # THEN its objects are under its own owner's keys
    assert second_view.status == "done", second_view.error
    for key in ("csv_key", "pdf_key"):
        assert first_view.result[key].startswith(f"reports/{owners[0]}/")
        assert second_view.result[key].startswith(f"reports/{owners[1]}/")
    # AND the first owner's result still points at the object it described
    after = s3.head_object(Bucket=bucket, Key=first_view.result["csv_key"])["ETag"]
    assert after == before
