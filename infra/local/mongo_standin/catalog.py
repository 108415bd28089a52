"""Collections and indexes: create, drop, list; unique indexes are enforced by mongomock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError, OperationFailure

from infra.local.mongo_standin.context import Document, Handler, Invocation, Reply, filter_matches
from infra.local.mongo_standin.errors import CommandError, ErrorCode, not_supported

ID_INDEX = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
# Index options the stand-in stores (and, for unique/sparse/partial, enforces); others that
# only tune a real server's storage are accepted and ignored.
_KEPT_INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")
_UNSUPPORTED_INDEX_OPTIONS = ("collation", "wildcardProjection", "weights", "hidden")
_UNSUPPORTED_CREATE_OPTIONS = (
    "capped",
    "viewOn",
    "pipeline",
    "timeseries",
    "validator",
    "clusteredIndex",
    "collation",
)


def create(inv: Invocation) -> Reply:
    for option in _UNSUPPORTED_CREATE_OPTIONS:
        if option in inv.body:
            raise not_supported(f"create with '{option}'")
    if inv.collection_exists():
        raise CommandError(
            ErrorCode.NAMESPACE_EXISTS, f"Collection {inv.namespace} already exists."
        )
    inv.ensure_collection()
    return {"ok": 1.0}


def drop(inv: Invocation) -> Reply:
    # Since MongoDB 7.0, dropping a missing collection succeeds.
    if not inv.collection_exists():
        return {"ok": 1.0}
    collection = inv.collection()
    indexes = len(collection.index_information())
    collection.drop()
    return {"nIndexesWas": indexes, "ns": inv.namespace, "ok": 1.0}


def list_collections(inv: Invocation) -> Reply:
    filter_spec = inv.document("filter")
    name_only = inv.flag("nameOnly")
    infos = []
    for name in sorted(inv.database.list_collection_names()):
        info = _collection_info(name)
        if filter_matches(filter_spec, info):
            infos.append({"name": name, "type": "collection"} if name_only else info)
    namespace = f"{inv.database_name}.$cmd.listCollections"
    return inv.cursors.first_batch(namespace, infos, _cursor_batch_size(inv))


def _collection_info(name: str) -> Document:
    return {
        "name": name,
        "type": "collection",
        "options": {},
        "info": {"readOnly": False},
        "idIndex": ID_INDEX,
    }


def list_indexes(inv: Invocation) -> Reply:
    if not inv.collection_exists():
        raise CommandError(ErrorCode.NAMESPACE_NOT_FOUND, f"ns does not exist: {inv.namespace}")
    indexes = [_index_spec(spec) for spec in inv.collection().list_indexes()]
    namespace = f"{inv.database_name}.$cmd.listIndexes.{inv.collection_name}"
    return inv.cursors.first_batch(namespace, indexes, _cursor_batch_size(inv))


def _index_spec(spec: Any) -> Document:
    document = dict(spec)
    document["key"] = dict(document["key"])
    return document


def create_indexes(inv: Invocation) -> Reply:
    requested = inv.documents("indexes")
    if not requested:
        raise CommandError(ErrorCode.BAD_VALUE, "Must specify at least one index to create")
    created_collection = not inv.collection_exists()
    collection = inv.ensure_collection()
    before = len(collection.index_information())
    for spec in requested:
        _create_index(inv, spec)
    after = len(collection.index_information())
    reply: Reply = {
        "numIndexesBefore": before,
        "numIndexesAfter": after,
        "createdCollectionAutomatically": created_collection,
        "ok": 1.0,
    }
    if before == after:
        reply["note"] = "all indexes already exist"
    return reply


def _create_index(inv: Invocation, spec: Document) -> None:
    key, name = _index_key_and_name(spec)
    for option in _UNSUPPORTED_INDEX_OPTIONS:
        if option in spec:
            raise not_supported(f"index option '{option}'")
    existing = inv.collection().index_information()
    for other_name, other in existing.items():
        same_key = list(other["key"]) == key
        if same_key and other_name != name:
            raise CommandError(
                ErrorCode.INDEX_OPTIONS_CONFLICT,
                f"Index already exists with a different name: {other_name}",
            )
        if other_name == name and not same_key:
            raise CommandError(
                ErrorCode.INDEX_KEY_SPECS_CONFLICT,
                f"An existing index has the same name as the requested index: {name}",
            )
    if name == "_id_":
        return  # every collection has it; mongomock lists it without storing it
    options = {option: spec[option] for option in _KEPT_INDEX_OPTIONS if option in spec}
    try:
        inv.collection().create_index(key, name=name, **options)
    except DuplicateKeyError:
        raise
    except OperationFailure as exc:
        # mongomock reports "already exists with different options" without a code.
        raise CommandError(ErrorCode.INDEX_OPTIONS_CONFLICT, str(exc)) from exc


def _index_key_and_name(spec: Document) -> tuple[list[tuple[str, Any]], str]:
    key = spec.get("key")
    name = spec.get("name")
    if not isinstance(key, dict) or not key:
        raise CommandError(ErrorCode.FAILED_TO_PARSE, "index spec needs a non-empty 'key' object")
    if not isinstance(name, str) or not name:
        raise CommandError(ErrorCode.FAILED_TO_PARSE, "index spec needs a 'name' string")
    for direction in key.values():
        if direction not in (1, -1):
            raise not_supported(f"index type {direction!r} (only 1 and -1 keys)")
    return [(field, int(direction)) for field, direction in key.items()], name


def drop_indexes(inv: Invocation) -> Reply:
    if not inv.collection_exists():
        raise CommandError(ErrorCode.NAMESPACE_NOT_FOUND, f"ns not found {inv.namespace}")
    collection = inv.collection()
    existing = collection.index_information()
    for name in _indexes_to_drop(inv.body.get("index"), existing):
        collection.drop_index(name)
    return {"nIndexesWas": len(existing), "ok": 1.0}


def _indexes_to_drop(target: Any, existing: Mapping[str, Any]) -> list[str]:
    if target == "*":
        return [name for name in existing if name != "_id_"]
    if isinstance(target, dict):
        matches = [n for n, info in existing.items() if list(info["key"]) == list(target.items())]
        if not matches:
            raise CommandError(ErrorCode.INDEX_NOT_FOUND, f"can't find index with key: {target}")
        names = matches
    elif isinstance(target, str):
        names = [target]
    elif isinstance(target, list) and all(isinstance(n, str) for n in target):
        names = list(target)
    else:
        raise CommandError(
            ErrorCode.TYPE_MISMATCH, "dropIndexes 'index' must be a name, key or list"
        )
    for name in names:
        if name == "_id_":
            raise CommandError(ErrorCode.INVALID_OPTIONS, "cannot drop _id index")
        if name not in existing:
            raise CommandError(ErrorCode.INDEX_NOT_FOUND, f"index not found with name [{name}]")
    return names


def _cursor_batch_size(inv: Invocation) -> int | None:
    cursor = inv.document("cursor")
    size = cursor.get("batchSize")
    return None if size is None else int(size)


COMMANDS: dict[str, Handler] = {
    "create": create,
    "drop": drop,
    "listCollections": list_collections,
    "listIndexes": list_indexes,
    "createIndexes": create_indexes,
    "dropIndexes": drop_indexes,
    "deleteIndexes": drop_indexes,
}
