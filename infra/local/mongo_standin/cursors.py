"""Server-side cursors: results handed out in batches over ``find``/``aggregate`` + ``getMore``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

from infra.local.mongo_standin.errors import CommandError, ErrorCode

# A real server's defaults: 101 documents in a first batch, replies kept under 16 MiB,
# cursors idle for 10 minutes (cursorTimeoutMillis) are reaped.
DEFAULT_FIRST_BATCH = 101
MAX_BATCH_BYTES = 16 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 600.0


class _Results:
    """A result set read in batches, with one encoded document of look-ahead."""

    def __init__(self, namespace: str, documents: Iterable[dict[str, Any]]) -> None:
        self.namespace = namespace
        self.last_used = time.monotonic()
        self._source = iter(documents)
        self._head: RawBSONDocument | None = None

    def take(self, count: int | None) -> list[RawBSONDocument]:
        """Up to ``count`` documents (None: no count limit). A batch stops early to keep the
        reply under ``MAX_BATCH_BYTES``, but holds at least one so a cursor makes progress."""
        self.last_used = time.monotonic()
        batch: list[RawBSONDocument] = []
        total = 0
        while count is None or len(batch) < count:
            raw = self._next()
            if raw is None:
                break
            if batch and total + len(raw.raw) > MAX_BATCH_BYTES:
                self._head = raw
                break
            batch.append(raw)
            total += len(raw.raw)
        return batch

    def exhausted(self) -> bool:
        if self._head is None:
            self._head = self._next()
        return self._head is None

    def _next(self) -> RawBSONDocument | None:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        document = next(self._source, None)
        # Encoded once here; the reply embeds the bytes as they are.
        return None if document is None else RawBSONDocument(bson.encode(document))


class CursorRegistry:
    """Open cursors by id. Only the engine's single worker thread touches it."""

    def __init__(self) -> None:
        self._open: dict[int, _Results] = {}

    def __len__(self) -> int:
        return len(self._open)

    def first_batch(
        self,
        namespace: str,
        documents: Iterable[dict[str, Any]],
        batch_size: int | None,
        single_batch: bool = False,
    ) -> dict[str, Any]:
        """The ``cursor`` reply for a new result set; keeps the rest open if there is more.

        ``batch_size`` None means the server default; 0 opens the cursor with an empty batch.
        """
        results = _Results(namespace, documents)
        batch = results.take(DEFAULT_FIRST_BATCH if batch_size is None else batch_size)
        cursor_id = 0
        if not single_batch and not results.exhausted():
            self._reap_idle()
            cursor_id = self._new_id()
            self._open[cursor_id] = results
        return _cursor_reply(cursor_id, namespace, "firstBatch", batch)

    def next_batch(self, cursor_id: int, namespace: str, batch_size: int | None) -> dict[str, Any]:
        """The ``cursor`` reply for a ``getMore``; closes the cursor when it runs out.

        Without ``batch_size`` a batch holds as much as fits in one reply.
        """
        results = self._open.get(cursor_id)
        if results is None:
            raise CommandError(ErrorCode.CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
        if results.namespace != namespace:
            raise CommandError(
                ErrorCode.UNAUTHORIZED,
                f"Requested getMore on namespace '{namespace}', but cursor belongs to a "
                f"different namespace {results.namespace}",
            )
        batch = results.take(batch_size or None)
        if results.exhausted():
            del self._open[cursor_id]
            cursor_id = 0
        return _cursor_reply(cursor_id, namespace, "nextBatch", batch)

    def kill(self, cursor_ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """(killed, not found)."""
        killed: list[int] = []
        not_found: list[int] = []
        for cursor_id in cursor_ids:
            (killed if self._open.pop(cursor_id, None) is not None else not_found).append(cursor_id)
        return killed, not_found

    def _new_id(self) -> int:
        while True:
            cursor_id = secrets.randbits(62) + 1
            if cursor_id not in self._open:
                return cursor_id

    def _reap_idle(self) -> None:
        cutoff = time.monotonic() - IDLE_TIMEOUT_SECONDS
        for cursor_id in [c for c, r in self._open.items() if r.last_used < cutoff]:
            del self._open[cursor_id]


def _cursor_reply(
    cursor_id: int, namespace: str, key: str, batch: list[RawBSONDocument]
) -> dict[str, Any]:
    return {"cursor": {"id": bson.Int64(cursor_id), "ns": namespace, key: batch}, "ok": 1.0}
