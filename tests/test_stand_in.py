"""The in-process MongoDB stand-in answers as PyMongo's async client does where beanie 2
relies on it, without changing mongomock_motor's classes for anyone else."""

from __future__ import annotations

from typing import Any

import pytest

from shared.stand_in import StandInClient


@pytest.mark.anyio
async def test_list_collection_names_takes_beanies_arguments() -> None:
    # GIVEN a stand-in database with one collection
    db = StandInClient()["standin_names"]
    await db["things"].insert_one({"a": 1})
    # WHEN beanie 2 lists the collections with its arguments
    names = await db.list_collection_names(authorizedCollections=True, nameOnly=True)
    # THEN they are listed
    assert names == ["things"]


@pytest.mark.anyio
async def test_aggregate_is_awaited_for_its_cursor() -> None:
    # GIVEN documents in a stand-in collection
    collection = StandInClient()["standin_aggregate"]["orders"]
    await collection.insert_many([{"c": "EUR", "n": 2}, {"c": "EUR", "n": 3}, {"c": "USD", "n": 1}])
    # WHEN an aggregation is awaited, as with PyMongo's async client
    cursor = await collection.aggregate([{"$group": {"_id": "$c", "total": {"$sum": "$n"}}},
                                         {"$sort": {"_id": 1}}])
    # THEN the cursor yields the groups
    assert await cursor.to_list(None) == [{"_id": "EUR", "total": 5}, {"_id": "USD", "total": 1}]


@pytest.mark.anyio
async def test_mongomock_motor_itself_is_left_as_it_is() -> None:
    # GIVEN a stand-in in use
    await StandInClient()["standin_plain"]["x"].insert_one({})
    # WHEN mongomock_motor's own client is used beside it
    from mongomock_motor import AsyncMongoMockClient

    plain: Any = AsyncMongoMockClient()["standin_plain"]["x"]
    # THEN its aggregate still returns the cursor directly (no class was patched)
    cursor = plain.aggregate([])
    assert not hasattr(cursor, "__await__")
    assert await cursor.to_list(None) == []
