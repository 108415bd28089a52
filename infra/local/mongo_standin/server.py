"""The TCP side: accept connections on a loopback address and answer each message in turn."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from types import TracebackType

import anyio
import anyio.to_thread

from infra.local.mongo_standin import wire
from infra.local.mongo_standin.engine import Engine

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


class MongoStandIn:
    """A MongoDB stand-in listening on a loopback address; every connection shares one store.

    Commands run one at a time on a worker thread (mongomock is not thread-safe), so the
    event loop keeps reading requests and accepting connections meanwhile.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._connection_ids = itertools.count(1)
        self._limiter: anyio.CapacityLimiter | None = None
        self.host = DEFAULT_HOST
        self.port = 0

    @property
    def uri(self) -> str:
        """What a driver connects to, e.g. ``mongodb://127.0.0.1:PORT/?directConnection=true``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mongodb://{host}:{self.port}/?directConnection=true"

    async def start(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        """Listen on ``host:port``; port 0 picks a free port (read it from ``.port``)."""
        if self._server is not None:
            raise RuntimeError(f"the stand-in is already listening on {self.host}:{self.port}")
        _require_loopback(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        self._limiter = anyio.CapacityLimiter(1)
        self._server = await asyncio.start_server(self._serve_connection, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening and drop every connection; the data goes with the engine."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        # Cancelled handlers still finish the command they were running (threads cannot be
        # interrupted), so wait for them rather than leave writes half-answered.
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> MongoStandIn:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        connection_id = next(self._connection_ids)
        try:
            await self._answer_until_closed(reader, writer, connection_id)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up, possibly mid-message
        except wire.ProtocolViolation as exc:
            logger.warning("mongo stand-in: closing connection %d: %s", connection_id, exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer_until_closed(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection_id: int
    ) -> None:
        while True:
            header = await reader.readexactly(wire.HEADER.size)
            length, request_id, op_code = wire.parse_header(header)
            body = await reader.readexactly(length)
            reply = await anyio.to_thread.run_sync(
                self.engine.handle,
                op_code,
                request_id,
                body,
                connection_id,
                limiter=self._limiter,
            )
            if reply is not None:
                writer.write(reply)
                await writer.drain()


def _require_loopback(host: str) -> None:
    """The stand-in has no authentication: it must never be reachable from another machine."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the MongoDB stand-in binds only to a loopback IP address such as 127.0.0.1, "
            f"not {host!r}"
        )


async def serve(host: str = DEFAULT_HOST, port: int = 0) -> MongoStandIn:
    """Start a stand-in listening on ``host:port`` and return it; ``await close()`` it later."""
    standin = MongoStandIn()
    await standin.start(host, port)
    return standin


@asynccontextmanager
async def running(host: str = DEFAULT_HOST, port: int = 0) -> AsyncIterator[MongoStandIn]:
    """A stand-in for the duration of an ``async with`` block."""
    standin = await serve(host, port)
    try:
        yield standin
    finally:
        await standin.close()
