"""An owner's jobs, newest first, read from the owner's index (:meth:`Keys.owner_jobs`).

The index is a sorted set of job id -> created time (ms), written with the job's metadata
at enqueue and kept for the listing's retention, so a listing reads one owner's entries and
never scans the keyspace. Pages are cut by a cursor that names the last entry shown
(its score and id): entries enqueued meanwhile are newer and never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coredis import PureToken

from shared.queue.keys import Keys

# The filter values callers use; "succeeded" is a finished job's "done".
STATUS_ALIASES = {"succeeded": "done"}
_CURSOR = re.compile(r"^(\d{1,16}):([0-9a-f]{32}(?:-\d{1,2})?)$")
# Entries read per round trip while a page fills.
BATCH = 50


class BadCursor(ValueError):
    """The ``next`` value is not one a listing returned."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last entry shown (created ms, job id)."""

    score: int
    job_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score}:{self.job_id}".encode()).decode()

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(raw.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise BadCursor("next is not a cursor this API returned") from exc
        match = _CURSOR.match(text)
        if match is None:
            raise BadCursor("next is not a cursor this API returned")
        return cls(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class JobFilter:
    """What a listing keeps: a status (a job state, or ``succeeded``), a job name, and a
    creation window (exclusive bounds)."""

    status: str | None = None
    name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @property
    def state(self) -> str | None:
        """The job state the status filter names."""
        return STATUS_ALIASES.get(self.status, self.status) if self.status else None


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


class IndexScan:
    """The owner's index entries after ``cursor``, newest first, within the filter's
    creation window, read :data:`BATCH` at a time."""

    def __init__(self, redis: Any, keys: Keys, owner: str, window: JobFilter,
                 cursor: Cursor | None) -> None:
        self._redis = redis
        self._index = keys.owner_jobs(owner)
        self._floor: str | int = f"({_ms(window.created_after)}" if window.created_after else "-inf"
        self._before = _ms(window.created_before) if window.created_before else None
        self.position = cursor
        self._buffer: list[tuple[str, int]] = []
        self._done = False

    async def _fill(self) -> None:
        count = BATCH
        while not self._done and not self._buffer:
            pos = self.position
            ceiling: str | int = "+inf" if self._before is None else f"({self._before}"
            if pos is not None and (self._before is None or pos.score < self._before):
                ceiling = pos.score  # inclusive: entries tied with it may follow it
            rows = await self._redis.zrange(self._index, ceiling, self._floor,
                                            sortby=PureToken.BYSCORE, rev=True, offset=0,
                                            count=count, withscores=True)
            entries = [(str(member), int(score)) for member, score in rows]
            if pos is not None:  # drop the cursor's entry and the ties shown before it
                entries = [(m, s) for m, s in entries
                           if s < pos.score or (s == pos.score and m < pos.job_id)]
            self._buffer = entries
            if len(rows) < count:
                self._done = not entries
                if not entries:
                    return
                self._done = True  # this was the last read; the buffer holds the rest
            elif not entries:
                count *= 2  # a run of ties with the cursor's score: read past it

    async def batches(self) -> AsyncIterator[list[tuple[str, int]]]:
        """Entries in batches; :attr:`position` is advanced by :meth:`consumed`."""
        while True:
            await self._fill()
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            yield batch

    def consumed(self, job_id: str, score: int) -> None:
        self.position = Cursor(score, job_id)

    async def more(self, rest: list[tuple[str, int]]) -> bool:
        """Whether any entry follows :attr:`position` (``rest``: the unread part of the
        current batch)."""
        if rest:
            return True
        await self._fill()
        return bool(self._buffer)
