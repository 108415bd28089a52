"""``python -m infra.local.mongo_standin --port N``: run the stand-in until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from infra.local.mongo_standin.server import DEFAULT_HOST, running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.mongo_standin",
        description="An in-memory MongoDB stand-in (mongomock behind the wire protocol).",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="loopback address to bind")
    parser.add_argument("--port", type=int, default=27017, help="0 picks a free port")
    parser.add_argument("--log-level", default="WARNING", help="e.g. INFO, DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve_until_signalled(args.host, args.port))
    except (ValueError, OSError) as exc:
        print(f"mongo stand-in: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signalled(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(host, port) as standin:
        # Supervisors wait for this line, and read the port from it when they asked for 0.
        print(f"listening on {standin.host}:{standin.port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
