"""The order pipeline through the queue: place_order = validate | process | notify."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from beanie import PydanticObjectId

from infra.local.testing import sent_emails
from shared.models import Order, User
from tests.support import address
from worker.accounts import NO_ACCOUNT

pytestmark = pytest.mark.anyio


def order_payload(**overrides: Any) -> dict[str, Any]:
    payload = {"amount_cents": 4250, "currency": "EUR",
               "reference": f"ref-{uuid.uuid4().hex[:12]}"}
    return payload | overrides


async def make_user() -> User:
    """A user bound to its own subject (the owner its jobs are enqueued as)."""
    user = User(email=address("buyer"), display_name="Buyer", subject=f"u-{uuid.uuid4().hex}")
    await user.insert()
    return user


async def test_place_order_runs_the_three_steps_and_mails_the_confirmation(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN a user bound to the caller's subject
    user = await make_user()
    owner = str(user.subject)
    payload = order_payload()
    # WHEN the caller enqueues the pipeline (no user id in it) and its last step is awaited
    job = await queue.enqueue("place_order", payload, owner=owner)
    view = await queue.wait(job.id, owner, timeout=30)
    # THEN the final step is done with notify_order's result
    assert view.status == "done", view.error
    order = await Order.find_one(Order.reference == payload["reference"])
    assert order is not None
    assert view.result["order_id"] == str(order.id)
    # AND the order was recorded and marked notified, with the e-mail sent
    assert (order.user_id, order.amount_cents, order.currency, order.status) == (
        str(user.id), 4250, "EUR", "notified")
    [sent] = sent_emails(moto_endpoint, user.email)
    assert sent["id"] == view.result["message_id"]
    assert sent["subject"] == f"Order {payload['reference']} confirmed"
    assert "42.50 EUR" in sent["body"]
    # AND each step's result was the next step's input
    first, second, last = job.steps
    assert last == job.id
    validated = await queue.view(first, owner)
    assert validated.status == "done"
    assert validated.result == payload | {"user_id": str(user.id), "validated": True}
    processed = await queue.view(second, owner)
    assert processed.result == {"order_id": str(order.id), "user_id": str(user.id),
                                "reference": payload["reference"]}


async def test_a_failing_first_step_fails_the_steps_after_it(worker: Any, queue: Any) -> None:
    # GIVEN a caller with no user, whose token carried no e-mail claim to create one from
    owner = f"u-{uuid.uuid4().hex}"
    payload = order_payload()
    job = await queue.enqueue("place_order", payload, owner=owner)
    view = await queue.wait(job.id, owner, timeout=30)
    # THEN the last step never ran, and no order exists
    assert view.status == "failed"
    first = await queue.view(job.steps[0], owner)
    assert first.status == "failed"
    assert first.error == {"type": "PermanentJobError", "message": NO_ACCOUNT}
    assert first.tries == 1
    middle = await queue.view(job.steps[1], owner)
    assert middle.status == "failed"
    assert await Order.find_one(Order.reference == payload["reference"]) is None
    letters = {d.id: d for d in await queue.dead_letters(owner)}
    assert letters[job.steps[0]].name == "validate_order"
    assert letters[job.steps[0]].payload == payload


async def test_process_order_is_idempotent_on_the_reference(worker: Any, queue: Any) -> None:
    user = await make_user()
    payload = order_payload(user_id=str(user.id), validated=True)
    # WHEN the same step runs twice (at-least-once delivery)
    views = []
    for _ in range(2):
        job = await queue.enqueue("process_order", payload, owner="u1")
        views.append(await queue.wait(job.id, "u1", timeout=30))
    # THEN both return the same order, and there is one
    assert [v.status for v in views] == ["done", "done"]
    assert views[0].result == views[1].result
    orders = await Order.find(Order.reference == payload["reference"]).to_list()
    assert [str(o.id) for o in orders] == [views[0].result["order_id"]]
    assert orders[0].status == "processed"
    # AND the same reference with a different amount is refused, not overwritten
    clash = payload | {"amount_cents": 1}
    refused = await queue.wait(
        (await queue.enqueue("process_order", clash, owner="u1")).id, "u1", timeout=30
    )
    assert refused.status == "failed"
    assert refused.error is not None
    assert f"reference {payload['reference']} already names another of your orders" in (
        refused.error["message"])
    stored = await Order.get(orders[0].id)
    assert stored is not None
    assert stored.amount_cents == 4250


async def test_notify_order_twice_sends_one_email(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    user = await make_user()
    order = Order(user_id=str(user.id), amount_cents=999, currency="USD",
                  reference=f"ref-{uuid.uuid4().hex[:12]}", status="processed")
    await order.insert()
    step = {"order_id": str(order.id), "user_id": str(user.id), "reference": order.reference}
    views = []
    for _ in range(2):
        job = await queue.enqueue("notify_order", step, owner="u1")
        views.append(await queue.wait(job.id, "u1", timeout=30))
    assert [v.status for v in views] == ["done", "done"]
    assert views[0].result == views[1].result
    assert len(sent_emails(moto_endpoint, user.email)) == 1
    stored = await Order.get(order.id)
    assert stored is not None
    assert stored.status == "notified"


async def test_notify_order_for_a_missing_order_fails_permanently(
    worker: Any, queue: Any
) -> None:
    missing = str(PydanticObjectId())
    step = {"order_id": missing, "user_id": str(PydanticObjectId()), "reference": "r-1"}
    view = await queue.wait(
        (await queue.enqueue("notify_order", step, owner="u1")).id, "u1", timeout=30
    )
    assert view.status == "failed"
    assert view.error == {"type": "PermanentJobError", "message": "the order was not found"}
    assert view.tries == 1


async def test_a_failed_step_retried_resumes_the_pipeline_and_the_order_finishes(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN an order whose first step failed for good: the caller had no account yet
    owner = f"u-{uuid.uuid4().hex}"
    payload = order_payload()
    job = await queue.enqueue("place_order", payload, owner=owner)
    failed = await queue.wait(job.id, owner, timeout=30)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["message"].startswith("step validate_order failed: PermanentJobError")
    steps = await queue.step_views(failed, owner)
    assert [(name, v.status) for name, v in steps] == [
        ("validate_order", "failed"), ("process_order", "failed"), ("notify_order", "failed")]
    # WHEN the account exists and the failed step's dead letter is retried
    user = User(email=address("late"), display_name="Late", subject=owner)
    await user.insert()
    resumed = await queue.retry_dead_letter(job.steps[0], owner)
    # THEN the rest of the pipeline runs after it: the order is recorded and confirmed
    assert len(resumed.steps) == 3
    view = await queue.wait(resumed.id, owner, timeout=30)
    assert view.status == "done", view.error
    order = await Order.find_one(Order.reference == payload["reference"])
    assert order is not None
    assert order.status == "notified"
    assert view.result["order_id"] == str(order.id)
    assert len(sent_emails(moto_endpoint, user.email)) == 1


async def test_a_later_step_retried_resumes_from_that_step(
    worker: Any, queue: Any, moto_endpoint: str
) -> None:
    # GIVEN a pipeline resumed at its second step with that step's input
    user = await make_user()
    owner = str(user.subject)
    payload = order_payload()
    step_input = payload | {"user_id": str(user.id), "validated": True}
    job = await queue.enqueue("place_order", step_input, owner=owner, from_step=1)
    # THEN only the two remaining steps run, and the order finishes
    assert len(job.steps) == 2
    view = await queue.wait(job.id, owner, timeout=30)
    assert view.status == "done", view.error
    names = [name for name, _ in await queue.step_views(view, owner)]
    assert names == ["process_order", "notify_order"]
