"""Turns one wire message into one reply, running the command against a mongomock store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import mongomock

from infra.local.mongo_standin import admin, catalog, reads, wire, writes
from infra.local.mongo_standin.context import Document, Handler, Invocation, Reply
from infra.local.mongo_standin.cursors import CursorRegistry
from infra.local.mongo_standin.errors import CommandError, ErrorCode, translate

logger = logging.getLogger(__name__)

COMMANDS: dict[str, Handler] = {
    **admin.COMMANDS,
    **catalog.COMMANDS,
    **reads.COMMANDS,
    **writes.COMMANDS,
}

# Commands a real server still answers over legacy OP_QUERY: the handshake only.
_OP_QUERY_COMMANDS = frozenset({"hello", "isMaster", "ismaster"})
# Fields any command may carry that only matter to a replicated or secured server.
_GENERIC_FIELDS = frozenset(
    {
        "lsid",
        "$clusterTime",
        "$readPreference",
        "readConcern",
        "writeConcern",
        "maxTimeMS",
        "comment",
        "apiVersion",
        "apiStrict",
        "apiDeprecationErrors",
        "bypassDocumentValidation",
    }
)
_TRANSACTION_FIELDS = ("txnNumber", "startTransaction", "autocommit")

_Framer = Callable[[int, dict[str, Any]], bytes]


class Engine:
    """One in-memory MongoDB: a mongomock client plus the open cursors.

    mongomock is not thread-safe, so every message is handled under one lock.
    """

    def __init__(self, client: mongomock.MongoClient[Document] | None = None) -> None:
        self.client: mongomock.MongoClient[Document] = client or mongomock.MongoClient()
        self.cursors = CursorRegistry()
        self._lock = threading.Lock()

    def handle(
        self, op_code: int, request_id: int, body: bytes, connection_id: int
    ) -> bytes | None:
        """The reply bytes for one message body; None when the client asked for no reply."""
        reply_to: _Framer = wire.op_reply if op_code == wire.OP_QUERY else wire.op_msg_reply
        with self._lock:
            try:
                request = _parse(op_code, request_id, body)
            except CommandError as exc:
                return reply_to(request_id, exc.reply())
            reply = self.run(request, connection_id)
            if request.more_to_come:
                return None
            return _encode(reply_to, request_id, reply)

    def run(self, request: wire.Request, connection_id: int) -> Reply:
        """Run one decoded command; failures come back as error replies, never as exceptions."""
        try:
            name, handler = _resolve(request)
            body = {k: v for k, v in request.command.items() if k not in _GENERIC_FIELDS}
            invocation = Invocation(
                self.client, self.cursors, request.database, name, body, connection_id
            )
            return handler(invocation)
        except Exception as exc:
            error = translate(exc)
            if error is None:
                logger.exception("mongo stand-in: %r failed", next(iter(request.command), ""))
                error = CommandError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return error.reply()


def _parse(op_code: int, request_id: int, body: bytes) -> wire.Request:
    try:
        if op_code == wire.OP_QUERY:
            return wire.parse_op_query(request_id, body)
        return wire.parse_op_msg(request_id, body)
    except CommandError:
        raise
    except Exception as exc:  # InvalidBSON, struct.error, UnicodeDecodeError and kin
        raise CommandError(ErrorCode.INVALID_BSON, f"malformed message: {exc}") from exc


def _resolve(request: wire.Request) -> tuple[str, Handler]:
    name = next(iter(request.command), None)
    if name is None:
        raise CommandError(ErrorCode.FAILED_TO_PARSE, "empty command document")
    if request.op_code == wire.OP_QUERY and name not in _OP_QUERY_COMMANDS:
        raise CommandError(
            ErrorCode.UNSUPPORTED_OP_QUERY,
            f"Unsupported OP_QUERY command: {name}. The client driver may require an upgrade.",
        )
    handler = COMMANDS.get(name)
    if handler is None:
        raise CommandError(ErrorCode.COMMAND_NOT_FOUND, f"no such command: '{name}'")
    if any(field in request.command for field in _TRANSACTION_FIELDS):
        return name, admin.refuse_transaction
    return name, handler


def _encode(reply_to: _Framer, request_id: int, reply: Reply) -> bytes:
    try:
        frame = reply_to(request_id, reply)
    except Exception as exc:  # a reply mongomock built that BSON cannot carry
        logger.exception("mongo stand-in: could not encode a reply")
        error = CommandError(ErrorCode.INTERNAL_ERROR, f"could not encode the reply: {exc}")
        frame = reply_to(request_id, error.reply())
    return frame
