"""Writes: insert, update, delete (batched, with per-statement write errors), findAndModify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bson import json_util
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from infra.local.mongo_standin.context import Document, Handler, Invocation, Reply
from infra.local.mongo_standin.errors import CommandError, ErrorCode, not_supported, translate


@dataclass
class _Tally:
    """A write command's result, accumulated statement by statement."""

    n: int = 0
    modified: int = 0
    upserted: list[Document] = field(default_factory=list)
    errors: list[Document] = field(default_factory=list)


def insert(inv: Invocation) -> Reply:
    documents = inv.documents("documents")
    collection = inv.ensure_collection()

    def insert_one(document: Document, index: int, tally: _Tally) -> None:
        try:
            collection.insert_one(document)
        except DuplicateKeyError as exc:
            raise _duplicate_key(collection, document) from exc
        tally.n += 1

    tally = _run_batch(inv, documents, insert_one)
    return _write_reply(tally)


def update(inv: Invocation) -> Reply:
    statements = inv.documents("updates")
    if any(statement.get("upsert") for statement in statements):
        inv.ensure_collection()
    collection = inv.collection()

    def update_one(statement: Document, index: int, tally: _Tally) -> None:
        result = _apply_update(collection, statement)
        tally.n += result["n"]
        tally.modified += result["nModified"]
        if result.get("upserted") is not None:
            tally.upserted.append({"index": index, "_id": result["upserted"]})

    tally = _run_batch(inv, statements, update_one)
    reply = _write_reply(tally)
    reply["nModified"] = tally.modified
    if tally.upserted:
        reply["upserted"] = tally.upserted
    return reply


def delete(inv: Invocation) -> Reply:
    collection = inv.collection()

    def delete_one(statement: Document, index: int, tally: _Tally) -> None:
        query = _query(statement, "q")
        limit = statement.get("limit", 0)
        if limit not in (0, 1):
            raise CommandError(
                ErrorCode.FAILED_TO_PARSE,
                f"The limit field in delete objects must be 0 or 1. Got {limit}",
            )
        _refuse_collation(statement)
        result = collection.delete_one(query) if limit else collection.delete_many(query)
        tally.n += result.deleted_count

    return _write_reply(_run_batch(inv, inv.documents("deletes"), delete_one))


def _run_batch(
    inv: Invocation,
    statements: list[Document],
    run: Callable[[Document, int, _Tally], None],
) -> _Tally:
    if not statements:
        raise CommandError(
            ErrorCode.BAD_VALUE, "Write batch sizes must be between 1 and 100000. Got 0 operations."
        )
    ordered = inv.flag("ordered", True)
    tally = _Tally()
    for index, statement in enumerate(statements):
        try:
            run(statement, index, tally)
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            tally.errors.append(error.write_error(index))
            if ordered:
                break
    return tally


def _write_reply(tally: _Tally) -> Reply:
    reply: Reply = {"n": tally.n, "ok": 1.0}
    if tally.errors:
        reply["writeErrors"] = tally.errors
    return reply


def _apply_update(collection: Collection[Document], statement: Document) -> dict[str, Any]:
    """Run one ``{q, u, upsert, multi}`` statement; mongomock's raw result (n, nModified,
    upserted)."""
    query = _query(statement, "q")
    change = statement.get("u")
    upsert = bool(statement.get("upsert", False))
    multi = bool(statement.get("multi", False))
    if statement.get("arrayFilters"):
        raise not_supported("arrayFilters")
    _refuse_collation(statement)
    try:
        if isinstance(change, dict) and _is_replacement(change):
            if multi:
                raise CommandError(
                    ErrorCode.FAILED_TO_PARSE,
                    "multi update is not supported for replacement-style update",
                )
            result = collection.replace_one(query, change, upsert=upsert)
        elif isinstance(change, dict | list):  # update operators, or an aggregation pipeline
            update = collection.update_many if multi else collection.update_one
            result = update(query, change, upsert=upsert)
        else:
            raise CommandError(
                ErrorCode.FAILED_TO_PARSE, "update 'u' must be an object or a pipeline array"
            )
    except DuplicateKeyError as exc:
        raise _duplicate_key_unknown(collection.full_name) from exc
    return dict(result.raw_result or {})


def _is_replacement(change: Document) -> bool:
    return not change or not next(iter(change)).startswith("$")


def find_and_modify(inv: Invocation) -> Reply:
    remove = inv.flag("remove")
    change = inv.body.get("update")
    upsert = inv.flag("upsert")
    return_new = inv.flag("new")
    _check_find_and_modify(remove, change, upsert, return_new)
    if inv.body.get("arrayFilters"):
        raise not_supported("arrayFilters")
    _refuse_collation(inv.body)
    if upsert:
        inv.ensure_collection()
    collection = inv.collection()
    fields = inv.document("fields") or None
    sort = list(inv.document("sort").items()) or None
    target = collection.find_one(inv.document("query"), sort=sort)
    if remove:
        return _remove_found(collection, target, fields)
    if target is not None:
        return _update_found(collection, target["_id"], change, return_new, fields)
    if upsert:
        return _upsert(collection, inv.document("query"), change, return_new, fields)
    return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}


def _check_find_and_modify(remove: bool, change: Any, upsert: bool, return_new: bool) -> None:
    problem = None
    if remove and change is not None:
        problem = "Cannot specify both an update and remove=true"
    elif not remove and change is None:
        problem = "Either an update or remove=true must be specified"
    elif remove and upsert:
        problem = "Cannot specify both upsert=true and remove=true"
    elif remove and return_new:
        problem = (
            "Cannot specify both new=true and remove=true; "
            "'remove' always returns the deleted document"
        )
    if problem:
        raise CommandError(ErrorCode.FAILED_TO_PARSE, problem)


def _remove_found(
    collection: Collection[Document], target: Document | None, fields: Document | None
) -> Reply:
    if target is None:
        return {"lastErrorObject": {"n": 0}, "value": None, "ok": 1.0}
    before = collection.find_one({"_id": target["_id"]}, fields)
    collection.delete_one({"_id": target["_id"]})
    return {"lastErrorObject": {"n": 1}, "value": before, "ok": 1.0}


def _update_found(
    collection: Collection[Document],
    document_id: Any,
    change: Any,
    return_new: bool,
    fields: Document | None,
) -> Reply:
    by_id = {"_id": document_id}
    before = None if return_new else collection.find_one(by_id, fields)
    _apply_update(collection, {"q": by_id, "u": change})
    value = collection.find_one(by_id, fields) if return_new else before
    return {"lastErrorObject": {"n": 1, "updatedExisting": True}, "value": value, "ok": 1.0}


def _upsert(
    collection: Collection[Document],
    query: Document,
    change: Any,
    return_new: bool,
    fields: Document | None,
) -> Reply:
    raw = _apply_update(collection, {"q": query, "u": change, "upsert": True})
    document_id = raw["upserted"]
    value = collection.find_one({"_id": document_id}, fields) if return_new else None
    last_error = {"n": 1, "updatedExisting": False, "upserted": document_id}
    return {"lastErrorObject": last_error, "value": value, "ok": 1.0}


def _query(statement: Document, field_name: str) -> Document:
    query = statement.get(field_name, {})
    if not isinstance(query, dict):
        raise CommandError(ErrorCode.TYPE_MISMATCH, f"'{field_name}' must be an object")
    return query


def _refuse_collation(source: Document) -> None:
    collation = source.get("collation")
    if collation and collation != {"locale": "simple"}:
        raise not_supported("collation")


def _duplicate_key(collection: Collection[Document], document: Document) -> CommandError:
    """E11000 naming the index and key that clash, as a real server reports them."""
    namespace = collection.full_name
    clash = _find_clash(collection, document)
    if clash is None:
        return _duplicate_key_unknown(namespace)
    index, key_pattern, key_value = clash
    shown = ", ".join(f"{name}: {json_util.dumps(value)}" for name, value in key_value.items())
    return CommandError(
        ErrorCode.DUPLICATE_KEY,
        f"E11000 duplicate key error collection: {namespace} index: {index} dup key: {{ {shown} }}",
        keyPattern=key_pattern,
        keyValue=key_value,
    )


def _duplicate_key_unknown(namespace: str) -> CommandError:
    # After an update or upsert mongomock has rolled the document back, so which key clashed
    # is no longer known; the code and the collection still are.
    return CommandError(
        ErrorCode.DUPLICATE_KEY, f"E11000 duplicate key error collection: {namespace}"
    )


def _find_clash(
    collection: Collection[Document], document: Document
) -> tuple[str, Document, Document] | None:
    if "_id" in document and collection.count_documents({"_id": document["_id"]}):
        return "_id_", {"_id": 1}, {"_id": document["_id"]}
    for name, info in collection.index_information().items():
        if not info.get("unique"):
            continue
        key_value = {field: _dotted(document, field) for field, _ in info["key"]}
        if info.get("sparse") and all(value is None for value in key_value.values()):
            continue
        partial = info.get("partialFilterExpression")
        query = {"$and": [partial, key_value]} if partial else dict(key_value)
        if collection.count_documents(query):
            return name, dict(info["key"]), key_value
    return None


def _dotted(document: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


COMMANDS: dict[str, Handler] = {
    "insert": insert,
    "update": update,
    "delete": delete,
    "findAndModify": find_and_modify,
    "findandmodify": find_and_modify,
}
