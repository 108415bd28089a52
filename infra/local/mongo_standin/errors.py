"""Error replies shaped like a real server's, so PyMongo raises its usual exceptions."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from bson.errors import InvalidDocument
from pymongo.errors import DuplicateKeyError, InvalidName, OperationFailure, PyMongoError


class ErrorCode(IntEnum):
    """The MongoDB error codes the stand-in returns (names are the server's ``codeName``)."""

    INTERNAL_ERROR = 1
    BAD_VALUE = 2
    FAILED_TO_PARSE = 9
    UNAUTHORIZED = 13
    TYPE_MISMATCH = 14
    ILLEGAL_OPERATION = 20
    INVALID_BSON = 22
    INDEX_NOT_FOUND = 27
    NAMESPACE_NOT_FOUND = 26
    CURSOR_NOT_FOUND = 43
    NAMESPACE_EXISTS = 48
    COMMAND_NOT_FOUND = 59
    INVALID_OPTIONS = 72
    INVALID_NAMESPACE = 73
    INDEX_OPTIONS_CONFLICT = 85
    INDEX_KEY_SPECS_CONFLICT = 86
    NOT_IMPLEMENTED = 238
    UNSUPPORTED_OP_QUERY = 352
    PROTOCOL_ERROR = 17
    DUPLICATE_KEY = 11000
    NO_DB_ARGUMENT = 40571

    @property
    def code_name(self) -> str:
        return _CODE_NAMES.get(self, "".join(p.capitalize() for p in self.name.split("_")))


def code_name(code: int) -> str:
    """The server's ``codeName`` for a code; ``Location<code>`` for codes without a name,
    as a real server says for its assertion-site codes."""
    try:
        return ErrorCode(code).code_name
    except ValueError:
        return f"Location{code}"


_CODE_NAMES = {
    ErrorCode.INVALID_BSON: "InvalidBSON",
    ErrorCode.DUPLICATE_KEY: "DuplicateKey",
    ErrorCode.NO_DB_ARGUMENT: "Location40571",
    ErrorCode.UNSUPPORTED_OP_QUERY: "UnsupportedOpQueryCommand",
}


class CommandError(Exception):
    """A command failed: becomes ``{ok: 0, errmsg, code, codeName}`` plus any details."""

    def __init__(self, code: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def reply(self) -> dict[str, Any]:
        return {
            "ok": 0.0,
            "errmsg": self.message,
            "code": int(self.code),
            "codeName": code_name(self.code),
            **self.details,
        }

    def write_error(self, index: int) -> dict[str, Any]:
        """The same failure as one entry of a write command's ``writeErrors``."""
        return {"index": index, "code": int(self.code), "errmsg": self.message, **self.details}


def translate(exc: Exception) -> CommandError | None:
    """The reply for an exception raised while running a command; None for one that means a
    bug in the stand-in (the caller logs it with its traceback and answers InternalError).

    mongomock raises PyMongo's own exceptions for most invalid requests, and plain Python
    ones (ValueError, TypeError, NotImplementedError) for the rest."""
    if isinstance(exc, CommandError):
        return exc
    if isinstance(exc, DuplicateKeyError):
        return CommandError(ErrorCode.DUPLICATE_KEY, f"E11000 duplicate key error: {exc}")
    if isinstance(exc, InvalidName):
        return CommandError(ErrorCode.INVALID_NAMESPACE, str(exc))
    if isinstance(exc, OperationFailure):
        return CommandError(exc.code or ErrorCode.BAD_VALUE, str(exc))
    if isinstance(exc, NotImplementedError):
        return CommandError(
            ErrorCode.NOT_IMPLEMENTED, f"not supported by the MongoDB stand-in: {exc}"
        )
    if isinstance(exc, ValueError | TypeError | KeyError | InvalidDocument | PyMongoError):
        return CommandError(ErrorCode.BAD_VALUE, str(exc))
    return None


def not_supported(what: str) -> CommandError:
    """A real MongoDB feature the stand-in does not offer; says so rather than misbehaving."""
    return CommandError(
        ErrorCode.NOT_IMPLEMENTED, f"{what} is not supported by the MongoDB stand-in"
    )
