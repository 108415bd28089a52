"""Offload's wire format: JSON through Streaq's ``serializer``/``deserializer`` hooks.

Every process can read every job, whatever library a task imported: payloads, results and
failures are plain JSON. A failure is stored as a record (``type``, ``message``,
``retryable``, ``tries``), never as the exception object, and read back as a
:class:`JobFailure` (or Streaq's own :class:`~streaq.types.StreaqCancelled` for an abort,
so Streaq's ``abort_by_id`` still recognises it). Streaq signs the bytes (``signing_secret``).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

from streaq.types import StreaqCancelled

# The one key of a JSON object that stands for a failure record.
ERROR_KEY = "__offload_error__"


class JobFailure(Exception):
    """A job's failure as it is stored: the original exception's type name and message,
    whether that kind of error is worth retrying, and after how many tries it was given up.
    Any process can read it without importing the library that raised."""

    def __init__(self, type_name: str, message: str, *, retryable: bool = False,
                 tries: int | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.retryable = retryable
        self.tries = tries

    @classmethod
    def from_exception(cls, exc: BaseException, *, retryable: bool = False,
                       tries: int | None = None) -> JobFailure:
        """The record of ``exc`` (a :class:`JobFailure` keeps its own fields)."""
        if isinstance(exc, JobFailure):
            return exc
        return cls(type(exc).__name__, str(exc) or type(exc).__name__,
                   retryable=retryable, tries=tries)

    def record(self) -> dict[str, Any]:
        return {"type": self.type_name, "message": self.message,
                "retryable": self.retryable, "tries": self.tries}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_failure_from_record, (self.record(),))


def _failure_from_record(record: dict[str, Any]) -> JobFailure:
    return JobFailure(str(record.get("type") or "Error"), str(record.get("message") or ""),
                      retryable=bool(record.get("retryable")),
                      tries=record["tries"] if isinstance(record.get("tries"), int) else None)


def _encode(value: Any) -> Any:
    """What ``json`` cannot encode by itself, as plain JSON."""
    if isinstance(value, BaseException):
        return {ERROR_KEY: JobFailure.from_exception(value).record()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Decimal | UUID | PurePath):
        return str(value)
    dump = getattr(value, "model_dump", None)  # pydantic models, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _decode(obj: dict[str, Any]) -> Any:
    record = obj.get(ERROR_KEY) if len(obj) == 1 else None
    if not isinstance(record, dict):
        return obj
    if record.get("type") == StreaqCancelled.__name__:
        return StreaqCancelled(str(record.get("message") or "aborted"))
    return _failure_from_record(record)


def dumps(data: Any) -> bytes:
    """Streaq's ``serializer``: bytes, so that Streaq can sign them."""
    return json.dumps(data, default=_encode, separators=(",", ":"),
                      ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """Streaq's ``deserializer``: failures come back as :class:`JobFailure`."""
    return json.loads(data, object_hook=_decode)
