"""The domain records in MongoDB, as beanie 2 documents; indexes are declared here.

Only the worker (and the local stack) imports this module: it pulls in beanie and pymongo,
which ``functions/`` must never load.

Every datetime is stored and returned as UTC-aware: MongoDB keeps no zone and hands naive
values back unless the client is ``tz_aware``, so naive values are read as UTC here rather
than being compared against aware ones and raising ``TypeError`` somewhere later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import pymongo
from beanie import Document, Indexed
from pydantic import AfterValidator, Field
from pymongo import IndexModel

from shared.email import normalize_address


def utcnow() -> datetime:
    """The current time, UTC-aware (what every ``created_at`` defaults to)."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _currency(value: str) -> str:
    if len(value) != 3 or not value.isascii() or not value.isalpha() or not value.isupper():
        raise ValueError("currency must be three upper-case letters (ISO 4217), e.g. EUR")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
EmailAddress = Annotated[str, AfterValidator(normalize_address)]

ImageStatus = Literal["pending", "processing", "done", "failed"]
OrderStatus = Literal["pending", "processed", "notified"]
BlobStatus = Literal["pending", "uploaded", "deleted", "error"]


# A person who can sign in, order and receive e-mail. ``subject`` binds the user to an
# identity (the token's ``sub``, the owner of their jobs); users created before that binding,
# or by an operator, have none, so the unique index covers only the ones that do.
class User(Document):
    email: Annotated[EmailAddress, Indexed(unique=True)]
    display_name: str = Field(min_length=1, max_length=200)
    subject: str | None = Field(default=None, min_length=1, max_length=256)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    digest_opt_in: bool = True
    # The welcome e-mail's SES message id: set once sent, so it is sent once, ever. The
    # claim stops two concurrent jobs from both sending it.
    welcome_message_id: str | None = None
    welcome_claimed_at: UtcDatetime | None = None

    class Settings:
        name = "users"
        indexes = [
            IndexModel([("subject", pymongo.ASCENDING)], name="subject_unique", unique=True,
                       partialFilterExpression={"subject": {"$type": "string"}}),
        ]


# An uploaded image and the variants the worker derived from it (name -> S3 key).
class Image(Document):
    owner: Annotated[str, Indexed()]
    bucket: str
    # The upload's key: one Image per upload, so a re-run of the job finds the same record.
    source_key: Annotated[str, Indexed(unique=True)]
    status: ImageStatus = "pending"
    variants: dict[str, str] = Field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    error: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)

    class Settings:
        name = "images"


# An order placed through the order pipeline. A reference is unique per user (so one user
# cannot claim another's), and makes the order's insert idempotent.
class Order(Document):
    user_id: str
    amount_cents: int = Field(gt=0)
    currency: Annotated[str, AfterValidator(_currency)]
    reference: str
    status: OrderStatus = "pending"
    created_at: Annotated[UtcDatetime, Indexed()] = Field(default_factory=utcnow)
    # The confirmation e-mail's SES message id: set once sent, so it is sent once, ever.
    confirmation_message_id: str | None = None

    class Settings:
        name = "orders"
        indexes = [
            IndexModel([("user_id", pymongo.ASCENDING), ("reference", pymongo.ASCENDING)],
                       name="user_reference_unique", unique=True),
        ]


# A sign-in session; only the token's hash is stored, never the token.
class Session(Document):
    user_id: Annotated[str, Indexed()]
    token_hash: str
    expires_at: Annotated[UtcDatetime, Indexed()]

    class Settings:
        name = "sessions"


# One S3 object Offload wrote, tracked pending -> uploaded -> deleted (or error).
class Blob(Document):
    bucket: str
    key: str
    content_type: str
    size: int | None = None
    sha256: str | None = None
    status: BlobStatus = "pending"
    owner: str | None = None
    kind: str | None = None
    error: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)

    class Settings:
        name = "blobs"
        indexes = [
            IndexModel(
                [("bucket", pymongo.ASCENDING), ("key", pymongo.ASCENDING)],
                name="bucket_key_unique",
                unique=True,
            ),
            # The pending sweep asks for status == "pending" and updated_at < cutoff.
            IndexModel(
                [("status", pymongo.ASCENDING), ("updated_at", pymongo.ASCENDING)],
                name="status_updated_at",
            ),
        ]


ALL_MODELS: list[type[Document]] = [User, Image, Order, Session, Blob]
