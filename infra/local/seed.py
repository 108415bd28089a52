"""Demo data: a few users and a week of orders, written straight into the stack's MongoDB.

Lambdas never open MongoDB, so there is no API for this; the demo is a dev tool and talks
to the stack's database (the stand-in or ``MONGODB_URI``) with the same beanie models the
worker uses. Seeding is idempotent: users are found by e-mail, orders by reference. The users
the dev tokens name are bound to their subjects, so jobs enqueued with a dev token act on
them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.local.dev import DEV_PROFILES
from shared.config import Settings

USERS = (
    ("alice@example.com", "Alice Martin"),
    ("bob@example.com", "Bob Nakamura"),
    ("carol@example.com", "Carol Okafor"),
)
# e-mail -> the dev token's subject bound to that user (carol has no token).
SUBJECTS = {email: sub for sub, (email, _) in DEV_PROFILES.items()}
# (days ago, user index, amount in cents, currency)
ORDERS = (
    (1, 0, 12_50, "EUR"), (1, 1, 99_00, "EUR"), (1, 2, 45_25, "USD"),
    (2, 0, 7_99, "EUR"), (3, 1, 150_00, "USD"), (5, 2, 23_10, "EUR"), (6, 0, 64_00, "GBP"),
)


@dataclass(frozen=True)
class Seeded:
    user_ids: dict[str, str]  # e-mail -> User id
    orders: int


@contextmanager
def stack_environment(env: dict[str, str]) -> Iterator[None]:
    """The stack's settings in this process's environment, for as long as needed."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def settings_for(env: dict[str, str]) -> Settings:
    """The settings every component of the stack runs with."""
    with stack_environment(env):
        return Settings()


async def seed(settings: Settings, now: datetime | None = None) -> Seeded:
    """Create the demo users and orders (once); their ids."""
    from shared.db import close_db, init_db
    from shared.models import Order, User

    moment = now or datetime.now(UTC)
    client: Any = await init_db(settings)
    try:
        user_ids: dict[str, str] = {}
        for email, name in USERS:
            subject = SUBJECTS.get(email)
            user = await User.find_one(User.email == email)
            if user is None:
                user = await User(email=email, display_name=name, subject=subject).insert()
            elif user.subject is None and subject is not None:
                await user.set({User.subject: subject})
            user_ids[email] = str(user.id)
        ids = list(user_ids.values())
        for n, (days_ago, who, cents, currency) in enumerate(ORDERS):
            created = (moment - timedelta(days=days_ago)).replace(hour=10, minute=n)
            reference = f"demo-{created:%Y%m%d}-{n}"
            if await Order.find_one(Order.user_id == ids[who],
                                    Order.reference == reference) is None:
                await Order(user_id=ids[who], amount_cents=cents, currency=currency,
                            reference=reference, status="processed",
                            created_at=created).insert()
        return Seeded(user_ids, len(ORDERS))
    finally:
        await close_db(client)
