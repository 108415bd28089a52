"""A separate process that enqueues jobs by name with only ``shared`` imported.

Reads ``[{"name", "payload", "owner"}]`` as JSON on stdin, enqueues each through
``shared.queue.JobQueue`` (settings from ``OFFLOAD_*``), waits for each to finish and prints
``{"views": [...], "modules": [...]}`` as JSON: what a Lambda would see, and which heavy
modules the process had to import (none, the test checks).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from shared.config import get_settings
from shared.queue import JobQueue


async def main(requests: list[dict[str, Any]]) -> dict[str, Any]:
    views = []
    async with JobQueue(get_settings()) as queue:
        jobs = [
            await queue.enqueue(r["name"], r["payload"], owner=r["owner"]) for r in requests
        ]
        for request, job in zip(requests, jobs, strict=True):
            view = await queue.wait(job.id, request["owner"], timeout=60)
            views.append(
                {"name": request["name"], "id": job.id, "status": view.status,
                 "result": view.result, "error": view.error, "tries": view.tries}
            )
    heavy = sorted(m for m in ("PIL", "beanie", "pymongo", "worker", "mongomock")
                   if m in sys.modules)
    return {"views": views, "modules": heavy}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.load(sys.stdin))), default=str))
