"""E-mail jobs: welcome, password reset, and the daily digest of yesterday's orders.

Delivery is at least once. The welcome e-mail (and the order confirmation) is sent once,
ever: its message id is stored on the User (the Order) once SES accepted it. A reset
link is remembered in Redis for the idempotency window: a re-run of the same job returns
the first run's message id instead of mailing the person again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from beanie import PydanticObjectId
from pydantic import BaseModel, ConfigDict, Field

from shared.email import SenderNotVerified
from shared.errors import PermanentJobError, TransientJobError
from shared.jobs import CATALOGUE, NoInput, PasswordResetInput, WelcomeEmailInput
from shared.models import Order, User
from shared.queue import Keys
from worker.accounts import caller_user
from worker.context import WorkerContext
from worker.tasks.base import job
from worker.templates import mail

log = logging.getLogger("offload.worker.emails")

# Where the reset link points; the token is appended (it is URL-safe by its input model).
# Users read per page of the digest (one aggregation per page, not one query per user).
DIGEST_BATCH_SIZE = 100
# A digest marker outlives the day it is for, so a late re-run still finds it.
DIGEST_MARKER_TTL_SECONDS = 3 * 24 * 3600


def _sent_key(ctx: WorkerContext, what: str) -> str:
    return f"{Keys(ctx.settings.queue_name).prefix}sent:{what}"


async def send_once(ctx: WorkerContext, what: str, to: str, message: mail.Message) -> str:
    """Send ``message`` unless a message for ``what`` was sent within the idempotency
    window; returns the (first) SES message id.

    The marker is written after SES accepted the message: a crash in between re-sends
    (at least once), which beats losing a reset link.
    """
    key = _sent_key(ctx, what)
    previous = await ctx.redis.get(key)
    if previous:
        log.info("%s already sent as %s; not sending again", what, previous)
        return str(previous)
    message_id = await ctx.mailer.send(to, message.subject, message.html, message.text)
    await ctx.redis.set(key, message_id, ex=ctx.settings.idempotency_ttl_seconds)
    return message_id


async def require_user(user_id: str) -> User:
    """The user, or a permanent failure that does not echo the id it was given."""
    user = await User.get(PydanticObjectId(user_id))
    if user is None:
        raise PermanentJobError("the user was not found")
    return user


@job("send_welcome_email")
async def send_welcome_email(ctx: WorkerContext, inp: WelcomeEmailInput) -> dict[str, Any]:
    """Greet the caller's own user, once: a second job returns the first one's message id.
    The id is stored after SES accepted the message (a crash in between re-sends)."""
    user = await caller_user()
    if user.welcome_message_id is None:
        if not await _claim_welcome(user):
            raise TransientJobError("the welcome e-mail is being sent by another job")
        message = mail.welcome(user.display_name)
        try:
            message_id = await ctx.mailer.send(user.email, message.subject, message.html,
                                               message.text)
        except BaseException:
            await user.set({User.welcome_claimed_at: None})  # a retry may send it
            raise
        await user.set({User.welcome_message_id: message_id})
    else:
        log.info("welcome e-mail already sent to user %s; not sending again", user.id)
    return {"user_id": str(user.id), "message_id": user.welcome_message_id}


async def _claim_welcome(user: User) -> bool:
    """Claim the right to send ``user``'s welcome e-mail (one job at a time). A claim older
    than the job's timeout was left by a job that died, and can be taken over."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=CATALOGUE["send_welcome_email"].timeout_seconds)
    claimed = await User.get_pymongo_collection().update_one(
        {"_id": user.id, "welcome_message_id": None,
         "$or": [{"welcome_claimed_at": None}, {"welcome_claimed_at": {"$lt": stale}}]},
        {"$set": {"welcome_claimed_at": now}},
    )
    return claimed.modified_count == 1


@job("send_password_reset")
async def send_password_reset(ctx: WorkerContext, inp: PasswordResetInput) -> dict[str, Any]:
    user = await require_user(inp.user_id)
    link = ctx.settings.password_reset_url_base + quote(inp.token, safe="")
    # Keyed by the token's hash: a new token is a new e-mail, a re-run of this one is not.
    token_hash = hashlib.sha256(inp.token.encode()).hexdigest()
    message_id = await send_once(
        ctx, f"reset:{token_hash}", user.email, mail.password_reset(user.display_name, link)
    )
    return {"user_id": inp.user_id, "message_id": message_id}


# --- daily digest ---------------------------------------------------------------------


class DigestRecipient(BaseModel):
    """The three fields the digest reads of a user (a projection, not the whole document).

    ``email`` is a plain string here: a stored address the model would now refuse fails
    that one send (counted), instead of failing the page it was read in.
    """

    model_config = ConfigDict(populate_by_name=True)

    id: PydanticObjectId = Field(alias="_id")
    email: str
    display_name: str


def previous_utc_day(now: datetime | None = None) -> date:
    """The calendar day (UTC) before ``now``."""
    return ((now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=1)).date()


async def _recipient_pages(size: int) -> AsyncIterator[list[DigestRecipient]]:
    # A cursor on _id, not skip/limit: each page is an index range scan, and users who
    # sign up meanwhile neither shift pages nor get read twice.
    after: PydanticObjectId | None = None
    while True:
        query: dict[str, Any] = {"digest_opt_in": True}
        if after is not None:
            query["_id"] = {"$gt": after}
        page = await User.find(query).sort("+_id").limit(size).project(DigestRecipient).to_list()
        if not page:
            return
        yield page
        if len(page) < size:
            return
        after = page[-1].id


async def _totals_by_user(user_ids: list[str], day: date) -> dict[str, list[mail.CurrencyTotal]]:
    """Orders per user and currency on ``day``, for a whole page of users in one query."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    rows = await Order.aggregate([
        {"$match": {"user_id": {"$in": user_ids},
                    "created_at": {"$gte": start, "$lt": start + timedelta(days=1)}}},
        {"$group": {"_id": {"user": "$user_id", "currency": "$currency"},
                    "orders": {"$sum": 1}, "amount": {"$sum": "$amount_cents"}}},
        {"$sort": {"_id.user": 1, "_id.currency": 1}},
    ]).to_list()
    totals: dict[str, list[mail.CurrencyTotal]] = {}
    for row in rows:
        key = row["_id"]
        totals.setdefault(key["user"], []).append(
            mail.CurrencyTotal(key["currency"], int(row["orders"]), int(row["amount"]))
        )
    return totals


async def _send_digest(ctx: WorkerContext, user: DigestRecipient, day: date,
                       totals: list[mail.CurrencyTotal]) -> str:
    """Mail one user their digest; returns "sent", "skipped" or "failed"."""
    if not totals:
        return "skipped"  # nothing happened that day: no empty digests
    marker = _sent_key(ctx, f"digest:{day.isoformat()}:{user.id}")
    if not await ctx.redis.set(marker, "1", condition=_nx(), ex=DIGEST_MARKER_TTL_SECONDS):
        return "skipped"  # an earlier run already mailed this user for this day
    message = mail.daily_digest(user.display_name, day, totals)
    try:
        await ctx.mailer.send(user.email, message.subject, message.html, message.text)
    except SenderNotVerified:
        await ctx.redis.delete([marker])
        raise  # configuration, not this user: every other send would fail the same way
    except Exception as exc:
        await ctx.redis.delete([marker])  # so that a later run may try this user again
        log.warning("digest for user %s failed: %s: %s", user.id, type(exc).__name__, exc)
        return "failed"
    return "sent"


@job("send_daily_digest")
async def send_daily_digest(ctx: WorkerContext, inp: NoInput) -> dict[str, Any]:
    """Every opted-in user with orders yesterday (UTC) gets one e-mail summing them up.

    Sends are sequential: SES accounts have a per-second sending rate, and a throttled send
    would count as failed.
    """
    day = previous_utc_day()
    counts = {"sent": 0, "skipped": 0, "failed": 0}
    async for page in _recipient_pages(DIGEST_BATCH_SIZE):
        totals = await _totals_by_user([str(u.id) for u in page], day)
        for user in page:
            counts[await _send_digest(ctx, user, day, totals.get(str(user.id), []))] += 1
    log.info("daily digest for %s: %s", day, counts)
    return {"day": day.isoformat(), **counts}


def _nx() -> Any:
    from coredis import PureToken

    return PureToken.NX
