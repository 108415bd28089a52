"""A replication link that can stall: ``python -m bench.lag_link TARGET_PORT``.

A TCP proxy from a free 127.0.0.1 port (printed on the first line of stdout) to
``TARGET_PORT``, in a process of its own so a busy benchmark never delays what it
forwards. SIGUSR1 stalls it: from then on nothing is forwarded either way (what arrives
is read and held back). SIGTERM ends it: the number of bytes held back is printed, and
every connection closes with them undelivered, as when a primary dies with a replication
backlog its replica never read. Used by :mod:`bench.failover`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys


class Link:
    """The proxy's state: stalled or not, and what it held back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = asyncio.Event()
        self.held_bytes = 0

    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: opened to the target, forwarded both ways (asyncio's TCP
        transports set TCP_NODELAY, as Redis does, so small acks are not delayed)."""
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the target is gone (killed): so is this connection
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            if self.stalled.is_set():
                self.held_bytes += len(data)
                continue
            dst.write(data)
            await dst.drain()
        dst.close()


async def serve(target_port: int) -> None:
    link = Link(target_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, link.stalled.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(link.connect, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    print(link.held_bytes, flush=True)
    # Exit at once, as a dead host would: the OS closes every connection, held bytes
    # unsent, with no goodbye from asyncio's teardown.
    os._exit(0)


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
