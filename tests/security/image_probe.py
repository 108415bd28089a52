"""Run ``process_image`` on one file in a fresh process and report what it cost.

``python -m tests.security.image_probe FILE``: prints one JSON object with the outcome
(``processed`` or ``refused`` and why), the output sizes, the wall and CPU time of the call,
and the process's peak resident memory, interpreter and Pillow included. The peak is the
kernel's high-water mark of this address space (``VmHWM``, reset by ``exec``): on Linux
``ru_maxrss`` starts at the forking parent's size, so it would report the test runner's
memory. The parent test adds the child's CPU time from ``getrusage(RUSAGE_CHILDREN)`` and
compares everything with the bounds it states.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import Settings


def probe(path: Path) -> dict[str, Any]:
    from worker.imaging import ImageRejected, process_image

    settings = Settings()
    data = path.read_bytes()
    baseline_mib = peak_rss_mib()
    cpu = time.process_time()
    wall = time.perf_counter()
    report: dict[str, Any] = {"input_bytes": len(data)}
    try:
        result = process_image(
            data,
            max_pixels=settings.image_max_pixels,
            large_side=settings.image_max_side,
            thumb_side=settings.image_thumbnail_side,
        )
    except ImageRejected as exc:
        report.update(outcome="refused", reason=str(exc), permanent=True)
    else:
        report.update(
            outcome="processed",
            source=f"{result.width}x{result.height} {result.source_format}",
            outputs={name: [o.width, o.height, len(o.data)]
                     for name, o in result.outputs.items()},
        )
    report.update(
        wall_s=round(time.perf_counter() - wall, 3),
        cpu_s=round(time.process_time() - cpu, 3),
        peak_rss_mib=peak_rss_mib(),
        baseline_rss_mib=baseline_mib,
    )
    return report


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]))))
