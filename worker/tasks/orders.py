"""The order pipeline ``place_order``: validate_order | process_order | notify_order.

Each step returns the next step's input (see ``shared.jobs``); Streaq publishes a step only
once the previous one finished, so a failed step fails the steps after it. The order is
always the caller's own: validate_order resolves the job owner's User, and references are
unique per user. Every step is safe to run twice: the order is upserted on (user, reference),
and the confirmation's message id is stored on the order once sent.
"""

from __future__ import annotations

from typing import Any

from beanie import PydanticObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.errors import PermanentJobError, TransientJobError
from shared.jobs import OrderInput, ProcessedOrderInput, ValidatedOrderInput
from shared.models import Order, utcnow
from worker.accounts import caller_user
from worker.context import WorkerContext
from worker.tasks.base import job
from worker.tasks.emails import require_user
from worker.templates import mail


@job("validate_order")
async def validate_order(ctx: WorkerContext, inp: OrderInput) -> dict[str, Any]:
    user = await caller_user()
    return {**inp.model_dump(mode="json"), "user_id": str(user.id), "validated": True}


async def _upsert(inp: ValidatedOrderInput) -> dict[str, Any]:
    fresh = Order(user_id=inp.user_id, amount_cents=inp.amount_cents, currency=inp.currency,
                  reference=inp.reference, status="processed", created_at=utcnow())
    document = fresh.model_dump(exclude={"id", "revision_id"})
    collection = Order.get_pymongo_collection()
    mine = {"user_id": inp.user_id, "reference": inp.reference}
    found: dict[str, Any] | None
    try:
        found = await collection.find_one_and_update(
            mine, {"$setOnInsert": document}, upsert=True, return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        # Two runs upserted at once; the unique index let one insert, the other reads it.
        found = await collection.find_one(mine)
    if found is None:
        raise TransientJobError(f"order {inp.reference} vanished while being recorded")
    return dict(found)


@job("process_order")
async def process_order(ctx: WorkerContext, inp: ValidatedOrderInput) -> dict[str, Any]:
    if not inp.validated:
        raise PermanentJobError(f"order {inp.reference} was not validated")
    stored = await _upsert(inp)
    same = (stored["amount_cents"], stored["currency"]) == (inp.amount_cents, inp.currency)
    if not same:
        raise PermanentJobError(
            f"reference {inp.reference} already names another of your orders ({stored['_id']})"
        )
    return {"order_id": str(stored["_id"]), "user_id": inp.user_id, "reference": inp.reference}


@job("notify_order")
async def notify_order(ctx: WorkerContext, inp: ProcessedOrderInput) -> dict[str, Any]:
    order = await Order.get(PydanticObjectId(inp.order_id))
    if order is None or order.user_id != inp.user_id:
        raise PermanentJobError("the order was not found")
    user = await require_user(order.user_id)
    message_id = order.confirmation_message_id
    if message_id is None:
        message = mail.order_confirmation(user.display_name, order.reference,
                                          order.amount_cents, order.currency)
        message_id = await ctx.mailer.send(user.email, message.subject, message.html,
                                           message.text)
    if order.status != "notified" or order.confirmation_message_id is None:
        await order.set({Order.status: "notified", Order.confirmation_message_id: message_id})
    return {"order_id": inp.order_id, "message_id": message_id}
