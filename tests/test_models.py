"""The beanie models and init_db: validation, declared indexes enforced, the stand-in's rules."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from shared.config import Settings
from shared.db import StandInRefused, close_db, init_db
from shared.models import ALL_MODELS, Blob, Image, Order, Session, User

# beanie documents can only be built once init_beanie has bound them: hence ``mongo``.


@pytest.mark.anyio
async def test_user_email_is_normalized_and_validated(mongo: Any) -> None:
    assert User(email="  Ann@Example.COM ", display_name="Ann").email == "ann@example.com"
    with pytest.raises(ValidationError, match="not a valid e-mail address"):
        User(email="ann at example.com", display_name="Ann")


@pytest.mark.anyio
async def test_order_currency_must_be_three_upper_letters(mongo: Any) -> None:
    for bad in ("eur", "EURO", "E1R", "ÉUR"):
        with pytest.raises(ValidationError, match="three upper-case letters"):
            Order(user_id="u", amount_cents=1, currency=bad, reference="r")
    with pytest.raises(ValidationError):
        Order(user_id="u", amount_cents=0, currency="EUR", reference="r")


@pytest.mark.anyio
async def test_naive_datetimes_are_read_as_utc(mongo: Any) -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    session = Session(user_id="u", token_hash="h", expires_at=naive)
    assert session.expires_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert User(email="a@example.com", display_name="A").created_at.tzinfo is not None


def test_all_models_are_the_five_collections() -> None:
    assert {m.Settings.name for m in ALL_MODELS} == {
        "users", "images", "orders", "sessions", "blobs"}


@pytest.mark.anyio
async def test_duplicate_user_email_is_refused(mongo: Any) -> None:
    # GIVEN a user
    await User(email="dup@example.com", display_name="First").insert()
    # WHEN another registers with the same address in another case
    # THEN the unique index refuses it
    with pytest.raises(DuplicateKeyError):
        await User(email="DUP@example.com", display_name="Second").insert()
    assert await User.find(User.email == "dup@example.com").count() == 1


@pytest.mark.anyio
async def test_a_subject_binds_one_user_and_users_without_one_coexist(mongo: Any) -> None:
    # GIVEN a user bound to a subject, and two users bound to none
    subject = f"sub-{uuid.uuid4().hex}"
    await User(email=f"{subject}@example.com", display_name="Bound", subject=subject).insert()
    await User(email=f"a-{subject}@example.com", display_name="Unbound A").insert()
    await User(email=f"b-{subject}@example.com", display_name="Unbound B").insert()
    # WHEN another user claims the same subject
    # THEN the unique index refuses it
    with pytest.raises(DuplicateKeyError):
        await User(email=f"c-{subject}@example.com", display_name="Thief",
                   subject=subject).insert()
    assert await User.find(User.subject == subject).count() == 1


@pytest.mark.anyio
async def test_unique_indexes_on_images_orders_blobs(mongo: Any) -> None:
    await Image(owner="u", bucket="b", source_key="uploads/u/1/a.png").insert()
    with pytest.raises(DuplicateKeyError):
        await Image(owner="v", bucket="b", source_key="uploads/u/1/a.png").insert()
    await Order(user_id="u", amount_cents=5, currency="EUR", reference="ref-1").insert()
    with pytest.raises(DuplicateKeyError):
        await Order(user_id="u", amount_cents=7, currency="USD", reference="ref-1").insert()
    # A reference is unique per user: another user's "ref-1" is their own order.
    await Order(user_id="v", amount_cents=7, currency="USD", reference="ref-1").insert()
    await Blob(bucket="b1", key="k", content_type="text/plain").insert()
    await Blob(bucket="b2", key="k", content_type="text/plain").insert()  # other bucket: fine
    with pytest.raises(DuplicateKeyError):
        await Blob(bucket="b1", key="k", content_type="text/csv").insert()


@pytest.mark.anyio
async def test_declared_indexes_exist(mongo: Any) -> None:
    async def keys(model: Any) -> set[tuple[tuple[str, int], ...]]:
        info = await model.get_pymongo_collection().index_information()
        return {tuple((k, int(d)) for k, d in spec["key"]) for spec in info.values()}

    assert {(("email", 1),), (("subject", 1),)} <= await keys(User)
    assert {(("owner", 1),), (("source_key", 1),)} <= await keys(Image)
    assert {(("user_id", 1), ("reference", 1)), (("created_at", 1),)} <= await keys(Order)
    assert {(("user_id", 1),), (("expires_at", 1),)} <= await keys(Session)
    assert {(("bucket", 1), ("key", 1)), (("status", 1), ("updated_at", 1))} <= await keys(Blob)


@pytest.mark.anyio
async def test_datetimes_round_trip_utc_aware(mongo: Any) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    session = await Session(user_id="u1", token_hash="h", expires_at=expires).insert()
    stored = await Session.get(session.id)
    assert stored is not None
    assert stored.expires_at == expires
    assert await Session.find(Session.expires_at < datetime.now(UTC)).count() == 0


@pytest.mark.anyio
async def test_stand_in_is_one_client_per_process(settings: Settings, mongo: Any) -> None:
    if settings.mongodb_uri:
        pytest.skip("MONGODB_URI is set: a real server, not the stand-in")
    await User(email="kept@example.com", display_name="Kept").insert()
    # Another init (the worker's lifespan does one) and a close must not lose the data.
    again = await init_db(settings)
    await close_db(again)
    assert again is mongo
    assert await User.find_one(User.email == "kept@example.com") is not None


@pytest.mark.anyio
async def test_stand_in_is_refused_in_production() -> None:
    # Settings itself refuses an empty URI in production; init_db checks again, because a
    # Settings built with model_construct (or a future relaxed validator) skips that.
    prod = Settings.model_construct(env="production", mongodb_uri="")
    with pytest.raises(StandInRefused, match="development and tests only"):
        await init_db(prod)


def test_shared_db_import_stays_light() -> None:
    code = ("import sys, shared.db, shared.s3, shared.email; "
            "print(','.join(m for m in ('beanie', 'pymongo', 'mongomock', 'boto3', 'botocore') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""


@pytest.mark.anyio
async def test_unreachable_server_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from pymongo.errors import ServerSelectionTimeoutError

    import shared.db

    monkeypatch.setattr(shared.db, "SERVER_SELECTION_TIMEOUT_MS", 300)
    with pytest.raises(ServerSelectionTimeoutError):
        await init_db(Settings(env="test", mongodb_uri="mongodb://127.0.0.1:1/"))
