"""The in-process MongoDB stand-in (development and tests only): mongomock_motor's client,
subclassed where beanie 2 expects PyMongo's async client to answer differently.

- beanie 2 calls ``list_collection_names(authorizedCollections=True, nameOnly=True)``;
  mongomock accepts neither keyword. Both only narrow what a real server returns, so the
  stand-in drops them.
- PyMongo's async ``Collection.aggregate`` is a coroutine that returns the cursor, and
  beanie 2 awaits it; mongomock_motor returns the cursor directly.

Subclasses, built through mongomock_motor's public constructor arguments (``mock_mongo_client``)
and its database's ``delegate``, so no library class is changed for anyone else.
"""

from __future__ import annotations

from typing import Any

import mongomock_motor
from mongomock import MongoClient

# mongomock_motor's stubs alias these classes to motor's, whose signatures they do not
# have (docs/UPSTREAM.md): typed Any here, so the subclasses below ignore "subclass of Any".
_Client: Any = mongomock_motor.AsyncMongoMockClient
_Database: Any = mongomock_motor.AsyncMongoMockDatabase
_Collection: Any = mongomock_motor.AsyncMongoMockCollection


class StandInCollection(_Collection):  # type: ignore[misc]
    """A collection whose ``aggregate`` is a coroutine, as PyMongo's async one is, and whose
    ``create_indexes`` keeps every option of each ``IndexModel``."""

    async def aggregate(self, *args: Any, **kwargs: Any) -> Any:
        return super().aggregate(*args, **kwargs)

    async def create_indexes(self, indexes: list[Any], **kwargs: Any) -> list[str]:
        # mongomock's create_indexes drops partialFilterExpression (docs/UPSTREAM.md);
        # its create_index keeps it, so each model goes through that instead.
        names = []
        for index in indexes:
            options = dict(index.document)
            keys = options.pop("key")
            names.append(await self.create_index(list(keys.items()), **options, **kwargs))
        return names


class StandInDatabase(_Database):  # type: ignore[misc]
    """A database that hands out :class:`StandInCollection` and takes beanie's arguments."""

    def get_collection(self, *args: Any, **kwargs: Any) -> StandInCollection:
        return StandInCollection(self, self.delegate.get_collection(*args, **kwargs))

    async def list_collection_names(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("authorizedCollections", None)
        kwargs.pop("nameOnly", None)
        return await super().list_collection_names(*args, **kwargs)


class StandInClient(_Client):  # type: ignore[misc]
    """One in-memory store (datetimes read back UTC-aware) behind PyMongo-like databases."""

    def __init__(self) -> None:
        self.store: MongoClient[Any] = MongoClient(tz_aware=True)
        super().__init__(mock_mongo_client=self.store)

    def get_database(self, *args: Any, **kwargs: Any) -> StandInDatabase:
        return StandInDatabase(self, self.store.get_database(*args, **kwargs))
