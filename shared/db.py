"""Open MongoDB and bind the beanie models to it: a real server, or the in-memory stand-in.

With ``OFFLOAD_MONGODB_URI`` set, PyMongo's ``AsyncMongoClient``. Without it (development
and tests only), the in-memory stand-in (:mod:`shared.stand_in`): one per process, never
closed, because a test and the worker it runs share the process and must see the same data.

beanie, pymongo and mongomock are imported inside the functions so that importing
``shared`` stays cheap for the Lambdas.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from shared.config import Settings

SERVER_SELECTION_TIMEOUT_MS = 5_000

_stand_in: Any = None
_stand_in_lock = threading.Lock()


D = TypeVar("D")


async def upsert_document(model: type[D], find: Callable[[], Any],
                          update: Mapping[str, Any]) -> D:
    """Apply ``update`` to the document ``find()`` matches, inserting it when none does, in
    one atomic find-and-modify; return the document as it is now. Two concurrent first
    inserts of the same unique key: the loser gets ``DuplicateKeyError`` and tries once
    more, when its query matches the winner's document."""
    from beanie import UpdateResponse
    from pymongo.errors import DuplicateKeyError

    async def once() -> Any:
        return await find().update(dict(update), upsert=True,
                                   response_type=UpdateResponse.NEW_DOCUMENT)

    try:
        document = await once()
    except DuplicateKeyError:
        document = await once()
    if not isinstance(document, model):
        raise RuntimeError(f"upserting a {model.__name__} returned {document!r}")
    return document


class StandInRefused(RuntimeError):
    """The in-memory stand-in was asked for in production."""


async def init_db(settings: Settings) -> Any:
    """Connect, bind every model in ``ALL_MODELS`` and create their indexes; returns the client."""
    from beanie import init_beanie

    from shared.models import ALL_MODELS

    client = _server_client(settings) if settings.mongodb_uri else _stand_in_client(settings)
    try:
        await init_beanie(database=client[settings.mongodb_database], document_models=ALL_MODELS)
    except BaseException:
        await close_db(client)  # an unreachable server must not leave a client behind
        raise
    return client


async def close_db(client: Any) -> None:
    """Close a server client; the process-wide stand-in stays open (see module docstring)."""
    if client is None or client is _stand_in:
        return
    await client.close()


def _server_client(settings: Settings) -> Any:
    from pymongo import AsyncMongoClient

    # tz_aware: datetimes come back UTC-aware, as the models store them. Reads from the
    # primary whatever the URI says: a pipeline step must see what the step before wrote
    # (a lagging replica made notify_order miss the order process_order had just saved).
    return AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        tz_aware=True,
        appname="offload",
        readPreference="primary",
    )


def _stand_in_client(settings: Settings) -> Any:
    global _stand_in
    if settings.env == "production":
        raise StandInRefused(
            "OFFLOAD_MONGODB_URI is empty: the in-memory MongoDB stand-in is for development "
            "and tests only"
        )
    with _stand_in_lock:
        if _stand_in is None:
            from shared.stand_in import StandInClient

            _stand_in = StandInClient()
        return _stand_in
