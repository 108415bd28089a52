"""The JSON wire format: what crosses Redis is plain JSON any process can read."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel
from streaq.types import StreaqCancelled

from shared.queue import wire


class Totals(BaseModel):
    day: date
    cents: int


def test_results_round_trip_as_plain_json() -> None:
    # GIVEN a result with the types jobs return
    data = {"r": {"when": datetime(2026, 12, 3, tzinfo=UTC), "tags": {"b", "a"},
                  "totals": Totals(day=date(2026, 12, 1), cents=5)}, "a": (1, 2)}
    # WHEN it is written and read back
    back = wire.loads(wire.dumps(data))
    # THEN it is JSON: dates as ISO strings, sets and tuples as lists, models as dicts
    assert back == {"r": {"when": "2026-12-03T00:00:00+00:00", "tags": ["a", "b"],
                          "totals": {"day": "2026-12-01", "cents": 5}}, "a": [1, 2]}
    assert isinstance(wire.dumps(data), bytes)  # Streaq signs bytes only


def test_an_exception_from_any_library_is_stored_as_a_record() -> None:
    # GIVEN an exception of a class the reader may not be able to import
    class ProtocolBroken(Exception):
        pass

    raw = wire.dumps({"s": False, "r": ProtocolBroken("bad gzip body")})
    # THEN the bytes hold a record, not the object, and read back as a JobFailure
    assert b"ProtocolBroken" in raw and b"bad gzip body" in raw
    failure = wire.loads(raw)["r"]
    assert isinstance(failure, wire.JobFailure)
    assert failure.record() == {"type": "ProtocolBroken", "message": "bad gzip body",
                                "retryable": False, "tries": None}


def test_a_failure_keeps_its_retryable_flag_and_tries() -> None:
    failure = wire.JobFailure("TimeoutError", "took too long", retryable=True, tries=3)
    back = wire.loads(wire.dumps([failure]))[0]
    assert back.record() == failure.record()


def test_an_abort_reads_back_as_streaqs_own_cancellation() -> None:
    # Streaq's abort_by_id recognises an abort by this type.
    back = wire.loads(wire.dumps({"r": StreaqCancelled("Task aborted by user!")}))["r"]
    assert isinstance(back, StreaqCancelled)
    assert str(back) == "Task aborted by user!"


def test_a_value_json_cannot_hold_fails_loudly() -> None:
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        wire.dumps({"r": object()})
