"""MongoDB wire framing: parse OP_MSG / OP_QUERY requests, build OP_MSG / OP_REPLY replies.

Only the framing lives here; what a command means is the engine's business.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any

import bson
from bson.codec_options import CodecOptions

from infra.local.mongo_standin.errors import CommandError, ErrorCode

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

HEADER = struct.Struct("<iiii")
# What the stand-in advertises in hello, and so the most a client may send at once.
MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000

_CHECKSUM_PRESENT = 1 << 0
_MORE_TO_COME = 1 << 1
# Bits 0-15 are "required": a receiver must refuse a message with one it does not know.
_KNOWN_REQUIRED_FLAGS = _CHECKSUM_PRESENT | _MORE_TO_COME
_REQUIRED_FLAGS_MASK = 0xFFFF

# Naive datetimes are UTC on the wire and in mongomock alike; no zone conversion here.
DECODE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(document_class=dict)

_request_ids = itertools.count(1)


class ProtocolViolation(ValueError):
    """The byte stream is not MongoDB wire protocol the stand-in can answer: the connection
    is closed, as a real server does, because no reply could be framed for it."""


@dataclass(frozen=True)
class Request:
    """One decoded request: the command document with its document sequences merged in."""

    request_id: int
    op_code: int
    database: str
    command: dict[str, Any]
    # The client asked for no reply (an unacknowledged write, w=0).
    more_to_come: bool = False


def parse_header(header: bytes) -> tuple[int, int, int]:
    """(body length, request id, op code) of a 16-byte message header."""
    length, request_id, _response_to, op_code = HEADER.unpack(header)
    if length < HEADER.size + 5 or length > MAX_MESSAGE_SIZE:
        raise ProtocolViolation(f"message length {length} is outside 21..{MAX_MESSAGE_SIZE} bytes")
    if op_code not in (OP_MSG, OP_QUERY):
        # OP_COMPRESSED is never sent: hello offers no compressors. The rest are long gone.
        raise ProtocolViolation(f"unsupported opCode {op_code}")
    return length - HEADER.size, request_id, op_code


def parse_op_msg(request_id: int, body: bytes) -> Request:
    """Decode an OP_MSG body (everything after the header)."""
    (flags,) = struct.unpack_from("<I", body, 0)
    unknown = flags & _REQUIRED_FLAGS_MASK & ~_KNOWN_REQUIRED_FLAGS
    if unknown:
        raise CommandError(
            ErrorCode.PROTOCOL_ERROR, f"unknown required OP_MSG flag bits {unknown:#x}"
        )
    # A CRC-32C trailer is allowed but not checked: loopback TCP already checksums.
    end = len(body) - 4 if flags & _CHECKSUM_PRESENT else len(body)
    command, sequences = _parse_sections(body, 4, end)
    for identifier, documents in sequences.items():
        if identifier in command:
            raise CommandError(
                ErrorCode.PROTOCOL_ERROR, f"'{identifier}' is both a field and a document sequence"
            )
        command[identifier] = documents
    database = command.pop("$db", None)
    if not isinstance(database, str):
        raise CommandError(ErrorCode.NO_DB_ARGUMENT, "OP_MSG requests require a $db argument")
    return Request(request_id, OP_MSG, database, command, bool(flags & _MORE_TO_COME))


def _parse_sections(
    body: bytes, pos: int, end: int
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    command: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            if command is not None:
                raise CommandError(
                    ErrorCode.PROTOCOL_ERROR, "OP_MSG has more than one body section"
                )
            command, pos = _read_document(body, pos, end)
        elif kind == 1:
            identifier, documents, pos = _read_sequence(body, pos, end)
            sequences.setdefault(identifier, []).extend(documents)
        else:
            raise CommandError(ErrorCode.PROTOCOL_ERROR, f"unknown OP_MSG section kind {kind}")
    if command is None:
        raise CommandError(ErrorCode.PROTOCOL_ERROR, "OP_MSG has no body section")
    return command, sequences


def _read_document(body: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:
    (size,) = struct.unpack_from("<i", body, pos)
    if size < 5 or pos + size > end:
        raise CommandError(ErrorCode.INVALID_BSON, "BSON document overruns the message")
    return bson.decode(body[pos : pos + size], DECODE_OPTIONS), pos + size


def _read_sequence(body: bytes, pos: int, end: int) -> tuple[str, list[dict[str, Any]], int]:
    (size,) = struct.unpack_from("<i", body, pos)
    seq_end = pos + size
    if size < 5 or seq_end > end:
        raise CommandError(ErrorCode.PROTOCOL_ERROR, "document sequence overruns the message")
    identifier, pos = _read_cstring(body, pos + 4, seq_end)
    documents = bson.decode_all(body[pos:seq_end], DECODE_OPTIONS)
    return identifier, documents, seq_end


def _read_cstring(body: bytes, pos: int, end: int) -> tuple[str, int]:
    nul = body.find(b"\x00", pos, end)
    if nul < 0:
        raise CommandError(ErrorCode.PROTOCOL_ERROR, "unterminated string in message")
    return body[pos:nul].decode("utf-8"), nul + 1


def parse_op_query(request_id: int, body: bytes) -> Request:
    """Decode a legacy OP_QUERY; only ``<db>.$cmd`` queries (commands) make sense here."""
    namespace, pos = _read_cstring(body, 4, len(body))
    database, _, collection = namespace.partition(".")
    if collection != "$cmd":
        raise CommandError(
            ErrorCode.UNSUPPORTED_OP_QUERY,
            f"OP_QUERY is only supported for commands, not {namespace}",
        )
    query, _ = _read_document(body, pos + 8, len(body))
    # Drivers wrap a command in $query when they add $readPreference.
    wrapped = query.get("$query")
    command = dict(wrapped) if isinstance(wrapped, dict) else query
    return Request(request_id, OP_QUERY, database, command)


def op_msg_reply(response_to: int, document: dict[str, Any]) -> bytes:
    """An OP_MSG reply: flag bits 0 and one body section."""
    payload = b"\x00\x00\x00\x00\x00" + bson.encode(document)
    return _frame(OP_MSG, response_to, payload)


def op_reply(response_to: int, document: dict[str, Any]) -> bytes:
    """A legacy OP_REPLY carrying one document, the answer to an OP_QUERY command."""
    payload = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(document)
    return _frame(OP_REPLY, response_to, payload)


def _frame(op_code: int, response_to: int, payload: bytes) -> bytes:
    header = HEADER.pack(HEADER.size + len(payload), next(_request_ids), response_to, op_code)
    return header + payload
