"""Server-level commands: the handshake, liveness, build info, sessions, databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson

from infra.local.mongo_standin.context import Handler, Invocation, Reply, filter_matches
from infra.local.mongo_standin.errors import CommandError, ErrorCode
from infra.local.mongo_standin.wire import MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE

# MongoDB 7.0 (wire version 21): inside the range PyMongo 4.20 accepts (9..29), and a
# version beanie 2 treats as fully featured.
SERVER_VERSION = "7.0.0"
MAX_WIRE_VERSION = 21
# Reported so PyMongo enables sessions (beanie and callers may pass one); the stand-in has
# one shared store, so a session needs no server-side state.
SESSION_TIMEOUT_MINUTES = 30
MAX_WRITE_BATCH_SIZE = 100_000


def hello(inv: Invocation) -> Reply:
    """A standalone, writable primary. No ``topologyVersion``: PyMongo then polls instead of
    holding a streaming (awaitable) hello open, which this server does not implement."""
    legacy = inv.name != "hello"
    reply: dict[str, Any] = {
        "ismaster" if legacy else "isWritablePrimary": True,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
        "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
        "localTime": datetime.now(UTC),
        "logicalSessionTimeoutMinutes": SESSION_TIMEOUT_MINUTES,
        "connectionId": inv.connection_id,
        "minWireVersion": 0,
        "maxWireVersion": MAX_WIRE_VERSION,
        "readOnly": False,
        "ok": 1.0,
    }
    if legacy and inv.body.get("helloOk"):
        reply["helloOk"] = True
    return reply


def ping(inv: Invocation) -> Reply:
    del inv
    return {"ok": 1.0}


def build_info(inv: Invocation) -> Reply:
    del inv
    major, minor, patch = (int(part) for part in SERVER_VERSION.split("."))
    return {
        "version": SERVER_VERSION,
        "versionArray": [major, minor, patch, 0],
        "gitVersion": "mongo-standin",
        "bits": 64,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["mongomock"],
        "ok": 1.0,
    }


def refuse_transaction(inv: Invocation) -> Reply:
    """What a real standalone answers: transactions need a replica set."""
    raise CommandError(
        ErrorCode.ILLEGAL_OPERATION,
        f"{inv.name}: Transaction numbers are only allowed on a replica set member or mongos",
    )


def list_databases(inv: Invocation) -> Reply:
    filter_spec = inv.document("filter")
    name_only = inv.flag("nameOnly")
    databases: list[dict[str, Any]] = []
    total = 0
    for name in sorted(inv.client.list_database_names()):
        size = 0 if name_only else _database_size(inv, name)
        entry = {"name": name} if name_only else {"name": name, "sizeOnDisk": size, "empty": False}
        if filter_matches(filter_spec, entry):
            databases.append(entry)
            total += size
    if name_only:
        return {"databases": databases, "ok": 1.0}
    return {"databases": databases, "totalSize": total, "totalSizeMb": total >> 20, "ok": 1.0}


def _database_size(inv: Invocation, name: str) -> int:
    """Bytes the database's documents take as BSON (there is no disk)."""
    database = inv.client[name]
    return sum(
        len(bson.encode(document))
        for collection in database.list_collection_names()
        for document in database[collection].find()
    )


def drop_database(inv: Invocation) -> Reply:
    inv.client.drop_database(inv.database.name)
    return {"dropped": inv.database_name, "ok": 1.0}


COMMANDS: dict[str, Handler] = {
    "hello": hello,
    "isMaster": hello,
    "ismaster": hello,
    "ping": ping,
    "buildInfo": build_info,
    "buildinfo": build_info,
    "endSessions": ping,
    "commitTransaction": refuse_transaction,
    "abortTransaction": refuse_transaction,
    "listDatabases": list_databases,
    "dropDatabase": drop_database,
}
