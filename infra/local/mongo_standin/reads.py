"""Queries: find with cursors (getMore, killCursors), count, distinct, aggregate."""

from __future__ import annotations

from typing import Any

from infra.local.mongo_standin.context import Handler, Invocation, Reply
from infra.local.mongo_standin.errors import CommandError, ErrorCode, not_supported

# Options that change what a real server returns and that mongomock cannot honour: refused
# rather than silently ignored. Hints, timeouts and comments only tune a real server.
_FIND_UNSUPPORTED = (
    "tailable",
    "awaitData",
    "min",
    "max",
    "returnKey",
    "showRecordId",
    "let",
    "oplogReplay",
)
_AGGREGATE_UNSUPPORTED = ("explain", "let")


def find(inv: Invocation) -> Reply:
    _refuse(inv, _FIND_UNSUPPORTED)
    sort = inv.document("sort")
    cursor = inv.collection().find(
        inv.document("filter"), inv.document("projection") or None,
        sort=list(sort.items()) or None, skip=_non_negative(inv, "skip"),
        limit=_non_negative(inv, "limit"),
    )
    return inv.cursors.first_batch(
        inv.namespace, cursor, _batch_size(inv, inv.body), inv.flag("singleBatch")
    )


def get_more(inv: Invocation) -> Reply:
    cursor_id = inv.body["getMore"]
    collection = inv.body.get("collection")
    if isinstance(cursor_id, bool) or not isinstance(cursor_id, int):
        raise CommandError(ErrorCode.TYPE_MISMATCH, "getMore's cursor id must be a long")
    if not isinstance(collection, str):
        raise CommandError(ErrorCode.TYPE_MISMATCH, "getMore's 'collection' must be a string")
    namespace = f"{inv.database_name}.{collection}"
    return inv.cursors.next_batch(cursor_id, namespace, _batch_size(inv, inv.body))


def kill_cursors(inv: Invocation) -> Reply:
    cursor_ids = inv.body.get("cursors")
    if not isinstance(cursor_ids, list) or not all(isinstance(c, int) for c in cursor_ids):
        raise CommandError(
            ErrorCode.TYPE_MISMATCH, "killCursors' 'cursors' must be an array of longs"
        )
    killed, not_found = inv.cursors.kill(cursor_ids)
    return {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
        "ok": 1.0,
    }


def count(inv: Invocation) -> Reply:
    matched = inv.collection().count_documents(inv.document("query"))
    matched = max(matched - _non_negative(inv, "skip"), 0)
    # count's limit may be negative (a legacy "single batch" count); its size is what counts.
    limit = abs(inv.integer("limit", 0))
    return {"n": min(matched, limit) if limit else matched, "ok": 1.0}


def distinct(inv: Invocation) -> Reply:
    key = inv.body.get("key")
    if not isinstance(key, str) or not key:
        raise CommandError(ErrorCode.TYPE_MISMATCH, "distinct's 'key' must be a non-empty string")
    values = inv.collection().distinct(key, inv.document("query"))
    return {"values": list(values), "ok": 1.0}


def aggregate(inv: Invocation) -> Reply:
    if not isinstance(inv.body["aggregate"], str):
        raise not_supported("a database-level aggregate ({aggregate: 1})")
    _refuse(inv, _AGGREGATE_UNSUPPORTED)
    if "cursor" not in inv.body:
        raise CommandError(
            ErrorCode.FAILED_TO_PARSE,
            "The 'cursor' option is required, except for aggregate with the explain argument",
        )
    pipeline = inv.documents("pipeline")
    results = inv.collection().aggregate(pipeline)
    return inv.cursors.first_batch(inv.namespace, results, _batch_size(inv, inv.document("cursor")))


def _refuse(inv: Invocation, options: tuple[str, ...]) -> None:
    for option in (*options, "collation"):
        value = inv.body.get(option)
        # The simple collation is the default behaviour, so it is honoured by doing nothing.
        if value and value != {"locale": "simple"}:
            raise not_supported(f"{inv.name} option '{option}'")


def _non_negative(inv: Invocation, field: str) -> int:
    value = inv.integer(field, 0)
    if value < 0:
        raise CommandError(
            ErrorCode.BAD_VALUE, f"{field} value must be non-negative, but got {value}"
        )
    return value


def _batch_size(inv: Invocation, source: dict[str, Any]) -> int | None:
    value = source.get("batchSize")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CommandError(
            ErrorCode.BAD_VALUE,
            f"{inv.name}: batchSize must be a non-negative number, got {value!r}",
        )
    return int(value)


COMMANDS: dict[str, Handler] = {
    "find": find,
    "getMore": get_more,
    "killCursors": kill_cursors,
    "count": count,
    "distinct": distinct,
    "aggregate": aggregate,
}
