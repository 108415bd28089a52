"""The order pipeline ``place_order``: validate_order | process_order | notify_order.

Each step returns the next step's input (see ``shared.jobs``); Streaq publishes a step only
once the previous one finished, so a failed step fails the steps after it. Every step is
safe to run twice: the order is upserted on its reference, and the confirmation e-mail is
remembered once sent.
"""

from __future__ import annotations

from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import PermanentJobError, TransientJobError
from shared.jobs import OrderInput, ProcessedOrderInput, ValidatedOrderInput
from shared.models import Order, utcnow
from worker.context import WorkerContext
from worker.tasks.base import job
from worker.tasks.emails import require_user, send_once
from worker.templates import mail


@job("validate_order")
async def validate_order(ctx: WorkerContext, inp: OrderInput) -> dict[str, Any]:
    await require_user(inp.user_id)
    return {**inp.model_dump(mode="json"), "validated": True}


async def _upsert(inp: ValidatedOrderInput) -> dict[str, Any]:
    fresh = Order(user_id=inp.user_id, amount_cents=inp.amount_cents, currency=inp.currency,
                  reference=inp.reference, status="processed", created_at=utcnow())
    document = fresh.model_dump(exclude={"id", "revision_id"})
    collection = Order.get_pymongo_collection()
    found: dict[str, Any] | None
    try:
        found = await collection.find_one_and_update(
            {"reference": inp.reference}, {"$setOnInsert": document}, upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        # Two runs upserted at once; the unique index let one insert, the other reads it.
        found = await collection.find_one({"reference": inp.reference})
    if found is None:
        raise TransientJobError(f"order {inp.reference} vanished while being recorded")
    return dict(found)


@job("process_order")
async def process_order(ctx: WorkerContext, inp: ValidatedOrderInput) -> dict[str, Any]:
    if not inp.validated:
        raise PermanentJobError(f"order {inp.reference} was not validated")
    stored = await _upsert(inp)
    same = (stored["user_id"], stored["amount_cents"], stored["currency"]) == (
        inp.user_id, inp.amount_cents, inp.currency)
    if not same:
        raise PermanentJobError(
            f"reference {inp.reference} already names a different order ({stored['_id']})"
        )
    return {"order_id": str(stored["_id"]), "user_id": inp.user_id, "reference": inp.reference}


@job("notify_order")
async def notify_order(ctx: WorkerContext, inp: ProcessedOrderInput) -> dict[str, Any]:
    order = await Order.get(PydanticObjectId(inp.order_id))
    if order is None:
        raise PermanentJobError(f"no order {inp.order_id}")
    user = await require_user(order.user_id)
    message = mail.order_confirmation(user.display_name, order.reference, order.amount_cents,
                                      order.currency)
    message_id = await send_once(ctx, f"order:{inp.order_id}", user.email, message)
    if order.status != "notified":
        await order.set({Order.status: "notified"})
    return {"order_id": inp.order_id, "message_id": message_id}
