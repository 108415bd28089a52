"""The MongoDB stand-in, driven by the real driver: pymongo's AsyncMongoClient and beanie 2.

The server runs as ``python -m infra.local.mongo_standin --port 0`` in a child process, as the
dev stack runs it; every test works in a database of its own.
"""

from __future__ import annotations

import asyncio
import select
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from beanie import init_beanie
from pymongo import AsyncMongoClient, ReturnDocument, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
)
from pymongo.write_concern import WriteConcern

from infra.local.mongo_standin import running
from shared.config import Settings
from shared.db import close_db, init_db
from shared.models import ALL_MODELS, Blob, Order, User

ROOT = Path(__file__).resolve().parents[1]
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def standin_uri() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.local.mongo_standin", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = _read_line(proc, timeout=20)
        assert line.startswith("listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError("the stand-in printed nothing within the timeout")
    line = proc.stdout.readline().strip()
    if not line:
        stderr = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the stand-in exited: {stderr}")
    return line


@pytest.fixture
async def db(standin_uri: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        standin_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    yield client[f"standin_{uuid.uuid4().hex[:10]}"]
    await client.close()


@pytest.fixture
async def models(db: AsyncDatabase[Doc]) -> AsyncDatabase[Doc]:
    """The project's beanie models bound to the test's database, indexes created."""
    await init_beanie(database=db, document_models=ALL_MODELS)
    return db


class CommandLog(monitoring.CommandListener):
    """The names of the commands a client sent, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# --- beanie and the project's models ---------------------------------------------------


@pytest.mark.anyio
async def test_beanie_insert_find_update_delete(models: AsyncDatabase[Doc]) -> None:
    # GIVEN a user saved through beanie
    user = await User(email="Ann@Example.com", display_name="Ann").insert()
    # WHEN it is found, updated and read back
    found = await User.find_one(User.email == "ann@example.com")
    assert found is not None
    assert found.id == user.id
    await found.set({User.display_name: "Ann B.", User.digest_opt_in: False})
    again = await User.get(user.id)
    # THEN the change is stored, with the datetime back as UTC-aware to the millisecond
    assert again is not None
    assert (again.display_name, again.digest_opt_in) == ("Ann B.", False)
    assert again.created_at.tzinfo is not None
    assert abs(again.created_at - user.created_at) < timedelta(milliseconds=1)
    # AND deleting it leaves nothing behind
    await again.delete()
    assert await User.find_all().count() == 0


@pytest.mark.anyio
async def test_unique_indexes_raise_duplicate_key_error(models: AsyncDatabase[Doc]) -> None:
    await User(email="dup@example.com", display_name="First").insert()
    with pytest.raises(DuplicateKeyError) as caught:
        await User(email="DUP@example.com", display_name="Second").insert()
    # The write error has a real server's shape: which index, which key.
    assert caught.value.code == 11000
    assert caught.value.details is not None
    assert caught.value.details["keyPattern"] == {"email": 1}
    assert caught.value.details["keyValue"] == {"email": "dup@example.com"}
    assert "index: email_1" in str(caught.value)

    # A compound unique index, and an update that would break one, are refused too.
    await Blob(bucket="b1", key="k", content_type="text/plain").insert()
    await Blob(bucket="b2", key="k", content_type="text/plain").insert()
    with pytest.raises(DuplicateKeyError):
        await Blob(bucket="b1", key="k", content_type="image/png").insert()
    with pytest.raises(DuplicateKeyError):
        await models["blobs"].update_one({"bucket": "b2"}, {"$set": {"bucket": "b1"}})
    assert await Blob.find(Blob.key == "k").count() == 2
    assert await Blob.find_one(Blob.bucket == "b2") is not None


@pytest.mark.anyio
async def test_aggregation_groups_and_sorts(models: AsyncDatabase[Doc]) -> None:
    amounts = {"ann": [500, 700], "bob": [100], "cy": [900, 50, 50]}
    for user, cents in amounts.items():
        for i, amount in enumerate(cents):
            await Order(user_id=user, amount_cents=amount, currency="EUR",
                        reference=f"{user}-{i}").insert()
    await Order(user_id="ann", amount_cents=1, currency="USD", reference="usd").insert()

    totals = await Order.aggregate([
        {"$match": {"currency": "EUR"}},
        {"$group": {"_id": "$user_id", "total": {"$sum": "$amount_cents"},
                    "orders": {"$sum": 1}}},
        {"$sort": {"total": -1}},
    ]).to_list()

    assert totals == [
        {"_id": "ann", "total": 1200, "orders": 2},
        {"_id": "cy", "total": 1000, "orders": 3},
        {"_id": "bob", "total": 100, "orders": 1},
    ]


@pytest.mark.anyio
async def test_init_db_binds_the_models_through_the_real_driver(standin_uri: str) -> None:
    # GIVEN the product's own init_db pointed at the stand-in
    settings = Settings(env="test", mongodb_uri=standin_uri,
                        mongodb_database=f"initdb_{uuid.uuid4().hex[:8]}")
    client = await init_db(settings)
    try:
        # THEN it is pymongo's client, the declared indexes exist and are enforced
        assert isinstance(client, AsyncMongoClient)
        indexes = await client[settings.mongodb_database]["blobs"].index_information()
        assert indexes["bucket_key_unique"]["unique"] is True
        assert indexes["bucket_key_unique"]["key"] == [("bucket", 1), ("key", 1)]
        expires = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        await User(email="z@example.com", display_name="Z").insert()
        from shared.models import Session

        await Session(user_id="z", token_hash="h", expires_at=expires).insert()
        stored = await Session.find_one(Session.user_id == "z")
        assert stored is not None
        assert stored.expires_at == expires
        # AND a second init (a restarted worker) finds the indexes already there
        await init_db(settings)
    finally:
        await close_db(client)


# --- pymongo operations ---------------------------------------------------------------


@pytest.mark.anyio
async def test_cursor_batches_come_through_get_more(standin_uri: str) -> None:
    log = CommandLog()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(standin_uri, event_listeners=[log])
    try:
        coll = client[f"cursor_{uuid.uuid4().hex[:8]}"]["items"]
        await coll.insert_many([{"n": i} for i in range(5)])

        docs = await coll.find({}, batch_size=2).sort("n", 1).to_list()

        assert [d["n"] for d in docs] == [0, 1, 2, 3, 4]
        assert log.names.count("find") == 1
        assert log.names.count("getMore") == 2  # batches of 2, 2 and 1

        # A cursor closed early is killed on the server: getMore on it then fails.
        cursor = coll.find({}, batch_size=2)
        assert (await cursor.next())["n"] == 0
        cursor_id = cursor.cursor_id
        assert cursor_id
        await cursor.close()
        assert "killCursors" in log.names
        with pytest.raises(OperationFailure) as caught:
            await coll.database.command({"getMore": cursor_id, "collection": "items"})
        assert caught.value.code == 43  # CursorNotFound

        # limit and skip apply across batches; a single-batch find leaves no cursor behind.
        limited = await coll.find({}, batch_size=2, skip=1, limit=3).sort("n", -1).to_list()
        assert [d["n"] for d in limited] == [3, 2, 1]
        assert (await coll.find_one({"n": {"$gt": 2}}, sort=[("n", -1)]) or {})["n"] == 4
    finally:
        await client.close()


@pytest.mark.anyio
async def test_find_and_modify_updates_upserts_and_removes(db: AsyncDatabase[Doc]) -> None:
    jobs = db["jobs"]
    await jobs.insert_many([{"name": "a", "prio": 1, "state": "new"},
                            {"name": "b", "prio": 5, "state": "new"}])

    # The highest-priority job is claimed; the old document comes back by default.
    before = await jobs.find_one_and_update(
        {"state": "new"}, {"$set": {"state": "taken"}}, sort=[("prio", -1)])
    assert before is not None
    assert (before["name"], before["state"]) == ("b", "new")
    assert (await jobs.find_one({"name": "b"}) or {})["state"] == "taken"

    # An upsert creates the document and returns it when asked for the new version.
    created = await jobs.find_one_and_update(
        {"name": "c"}, {"$set": {"state": "new"}, "$inc": {"prio": 3}}, upsert=True,
        return_document=ReturnDocument.AFTER, projection={"_id": False})
    assert created == {"name": "c", "state": "new", "prio": 3}

    # A replacement keeps the _id; remove returns what it removed.
    replaced = await jobs.find_one_and_replace(
        {"name": "a"}, {"name": "a", "prio": 0}, return_document=ReturnDocument.AFTER)
    assert replaced is not None
    assert "state" not in replaced
    removed = await jobs.find_one_and_delete({"name": "a"})
    assert removed is not None
    assert removed["_id"] == replaced["_id"]
    assert await jobs.find_one_and_delete({"name": "a"}) is None
    assert await jobs.count_documents({}) == 2


@pytest.mark.anyio
async def test_updates_and_deletes_report_their_counts(db: AsyncDatabase[Doc]) -> None:
    items = db["items"]
    await items.insert_many([{"n": i, "even": i % 2 == 0} for i in range(10)])

    updated = await items.update_many({"even": True}, {"$inc": {"n": 100}})
    assert (updated.matched_count, updated.modified_count) == (5, 5)
    upserted = await items.update_one({"n": -1}, {"$set": {"even": False}}, upsert=True)
    assert upserted.upserted_id is not None
    assert upserted.matched_count == 0
    replaced = await items.replace_one({"n": 1}, {"n": 1, "replaced": True})
    assert replaced.modified_count == 1
    # An aggregation-pipeline update.
    await items.update_one({"n": 3}, [{"$set": {"double": {"$multiply": ["$n", 2]}}}])
    assert (await items.find_one({"n": 3}) or {})["double"] == 6

    assert (await items.delete_one({"even": False})).deleted_count == 1
    deleted = await items.delete_many({"n": {"$gte": 100}})
    assert deleted.deleted_count == 5
    assert await items.count_documents({}) == 5
    assert await items.estimated_document_count() == 5
    assert sorted(await items.distinct("even")) == [False]


@pytest.mark.anyio
async def test_collections_indexes_and_databases(db: AsyncDatabase[Doc]) -> None:
    await db.create_collection("empty")
    with pytest.raises(CollectionInvalid):
        await db.create_collection("empty")
    await db["people"].create_index([("last", 1), ("first", -1)], name="name_idx")
    await db["people"].create_index("email", unique=True, sparse=True)
    assert await db.list_collection_names() == ["empty", "people"]
    assert await db.list_collection_names(filter={"name": {"$regex": "^peo"}}) == ["people"]
    assert {"name_idx", "email_1", "_id_"} == set(await db["people"].index_information())

    # sparse: documents without an email do not clash
    await db["people"].insert_many([{"last": "x"}, {"last": "y"}])
    # the same index again is a no-op; the same keys under another name are a conflict
    await db["people"].create_index([("last", 1), ("first", -1)], name="name_idx")
    with pytest.raises(OperationFailure) as caught:
        await db["people"].create_index([("last", 1), ("first", -1)], name="renamed")
    assert caught.value.code == 85  # IndexOptionsConflict
    # a unique index over existing duplicates cannot be built
    await db["people"].insert_one({"last": "x"})
    with pytest.raises(DuplicateKeyError):
        await db["people"].create_index("last", unique=True)

    await db["people"].drop_index("name_idx")
    assert "name_idx" not in await db["people"].index_information()
    await db.drop_collection("empty")
    assert await db.list_collection_names() == ["people"]

    names = await db.client.list_database_names()
    assert db.name in names
    await db.client.drop_database(db.name)
    assert db.name not in await db.client.list_database_names()


@pytest.mark.anyio
async def test_unacknowledged_writes_are_applied(db: AsyncDatabase[Doc]) -> None:
    fire_and_forget = db.get_collection("events", write_concern=WriteConcern(w=0))
    result = await fire_and_forget.insert_one({"kind": "w0"})
    assert not result.acknowledged
    # The next acknowledged command on the server runs after it (one command at a time).
    for _ in range(50):
        if await db["events"].count_documents({"kind": "w0"}):
            break
        await asyncio.sleep(0.02)
    assert await db["events"].count_documents({"kind": "w0"}) == 1


# --- errors: clear, and never fatal to the server ---------------------------------------


@pytest.mark.anyio
async def test_unknown_command_raises_operation_failure(db: AsyncDatabase[Doc]) -> None:
    with pytest.raises(OperationFailure) as caught:
        await db.command({"frobnicate": 1})
    assert caught.value.code == 59
    assert "no such command: 'frobnicate'" in str(caught.value)
    assert (await db.command("ping"))["ok"] == 1.0


@pytest.mark.anyio
async def test_unsupported_features_are_refused_by_name(db: AsyncDatabase[Doc]) -> None:
    await db["t"].insert_one({"a": [1, 2]})
    with pytest.raises(OperationFailure, match="arrayFilters is not supported") as caught:
        await db["t"].update_one({}, {"$set": {"a.$[x]": 0}}, array_filters=[{"x": 1}])
    assert caught.value.code == 238
    with pytest.raises(OperationFailure, match="collation"):
        await db["t"].find({}, collation={"locale": "fr"}).to_list()
    with pytest.raises(OperationFailure) as caught:
        async with db.client.start_session() as session, await session.start_transaction():
            await db["t"].insert_one({"a": 3}, session=session)
    assert caught.value.code == 20  # IllegalOperation: a standalone has no transactions
    assert await db["t"].count_documents({}) == 1


@pytest.mark.anyio
async def test_garbage_bytes_close_only_that_connection(
    standin_uri: str, db: AsyncDatabase[Doc]
) -> None:
    port = int(standin_uri.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed, no reply
    writer.close()
    # A message whose BSON is corrupt gets an error reply and the connection stays usable.
    reply = await _raw_round_trip(port, _op_msg(b"\x05\x00\x00\x00\x01"))
    assert reply["ok"] == 0.0
    assert reply["code"] == 22
    assert (await db.command("ping"))["ok"] == 1.0


@pytest.mark.anyio
async def test_legacy_op_query_handshake(standin_uri: str) -> None:
    port = int(standin_uri.split(":")[2].split("/")[0])
    query = bson.encode({"isMaster": 1, "helloOk": True})
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("<iiii", 16 + len(body), 7, 0, 2004) + body)
        header = await reader.readexactly(16)
        length, _, response_to, op_code = struct.unpack("<iiii", header)
        payload = await reader.readexactly(length - 16)
    finally:
        writer.close()
    assert (response_to, op_code) == (7, 1)  # OP_REPLY to our request
    _flags, cursor_id, _start, returned = struct.unpack_from("<iqii", payload)
    assert (cursor_id, returned) == (0, 1)
    hello = bson.decode(payload[20:])
    assert hello["ismaster"] is True
    assert hello["helloOk"] is True
    assert 9 <= hello["maxWireVersion"] <= 29


@pytest.mark.anyio
async def test_op_msg_document_sequences_are_merged(
    standin_uri: str, db: AsyncDatabase[Doc]
) -> None:
    # An insert whose documents travel in a kind-1 section, as drivers batch them.
    port = int(standin_uri.split(":")[2].split("/")[0])
    command = bson.encode({"insert": "seq", "$db": db.name})
    documents = [bson.encode({"_id": i, "v": f"doc{i}"}) for i in range(3)]
    reply = await _raw_round_trip(port, _op_msg(command, ("documents", documents)))
    assert reply == {"n": 3, "ok": 1.0}
    # (distinct's order is unspecified, in MongoDB as here: compare the stored documents)
    stored = await db["seq"].find({}, sort=[("_id", 1)]).to_list()
    assert [d["v"] for d in stored] == ["doc0", "doc1", "doc2"]


def _op_msg(document: bytes, sequence: tuple[str, list[bytes]] | None = None) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + document
    if sequence is not None:
        identifier, documents = sequence
        payload = identifier.encode() + b"\x00" + b"".join(documents)
        body += b"\x01" + struct.pack("<i", 4 + len(payload)) + payload
    return struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body


async def _raw_round_trip(port: int, message: bytes) -> Doc:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(message)
        (length,) = struct.unpack("<i", await reader.readexactly(4))
        rest = await reader.readexactly(length - 4)
        return bson.decode(rest[12 + 5:])
    finally:
        writer.close()


# --- several processes, one store --------------------------------------------------------

_WRITER = """
import asyncio, sys
from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError
from shared.models import ALL_MODELS, Order

async def main(uri, database, tag):
    client = AsyncMongoClient(uri, tz_aware=True)
    await init_beanie(database=client[database], document_models=ALL_MODELS)
    stored = 0
    for i in range(40):
        try:
            await Order(user_id=tag, amount_cents=100 + i, currency="EUR",
                        reference=f"ref-{i}").insert()
            stored += 1
        except DuplicateKeyError:
            pass
    print(stored)
    await client.close()

asyncio.run(main(*sys.argv[1:]))
"""


def _spawn_writer(uri: str, database: str, tag: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, uri, database, tag],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.anyio
async def test_processes_share_one_store(standin_uri: str, models: AsyncDatabase[Doc]) -> None:
    # GIVEN a process that writes 40 orders through beanie
    first = _spawn_writer(standin_uri, models.name, "first")
    out, err = await asyncio.to_thread(first.communicate, timeout=60)
    assert first.returncode == 0, err
    assert out.strip() == "40"
    # THEN this process sees them
    assert await Order.find(Order.user_id == "first").count() == 40

    # WHEN two more processes write the same user's references at the same time
    racers = [_spawn_writer(standin_uri, models.name, "first") for _ in range(2)]
    results = [await asyncio.to_thread(p.communicate, timeout=60) for p in racers]
    # THEN the unique index held across processes: nothing new was stored
    assert [p.returncode for p in racers] == [0, 0], [e for _, e in results]
    assert [o.strip() for o, _ in results] == ["0", "0"]
    assert await Order.find_all().count() == 40


# --- the command line and the embedding API ----------------------------------------------


def test_cli_refuses_a_non_loopback_host() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.local.mongo_standin", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "loopback" in proc.stderr
    assert "listening" not in proc.stdout


@pytest.mark.anyio
async def test_running_serves_in_process_and_closes() -> None:
    async with running() as standin:
        assert standin.host == "127.0.0.1"
        assert standin.port > 0
        client: AsyncMongoClient[Doc] = AsyncMongoClient(standin.uri, serverSelectionTimeoutMS=500)
        await client["x"]["y"].insert_one({"ok": True})
        assert await client["x"]["y"].count_documents({}) == 1
        # The engine is in this process: its mongomock store holds what the driver wrote.
        assert standin.engine.client["x"]["y"].count_documents({}) == 1
    # Closed with a client still connected: the client gets no server any more.
    with pytest.raises(ConnectionFailure):
        await client["x"]["y"].count_documents({})
    await client.close()
