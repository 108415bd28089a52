"""A benchmark's candidate process: ``python -m bench.child serve CANDIDATE`` answers JSON
requests on stdin, one per line, so the parent can interleave candidates that each live in
their own process (their own heap, their own libraries and library settings).

``python -m bench.child rss CANDIDATE INPUT`` runs the candidate once in this fresh process
and prints how far the resident set's high-water mark rose above what it was before the
call (imports and the input bytes already in memory, as in the job).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import image_candidates, memory


def _run(candidate: str, data: bytes, effort: int | None) -> tuple[str, image_candidates.Outputs]:
    """Run once: ``("ok", outputs)``; ``("refused: why", {})`` when the product refused the
    image, ``("raised Error: why", {})`` when another candidate raised."""
    from worker.imaging import ImageRejected

    try:
        return "ok", image_candidates.CANDIDATES[candidate](data, effort)
    except ImageRejected as exc:
        return f"refused: {exc}", {}
    except Exception as exc:  # a comparator's own failure is an outcome, not a crash
        return f"raised {type(exc).__name__}: {exc}", {}


def _time(candidate: str, request: dict[str, Any]) -> dict[str, Any]:
    data = Path(request["input"]).read_bytes()
    wall, cpu, outcome = [], [], ""
    for _ in range(int(request.get("repeat", 1))):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        outcome, _ = _run(candidate, data, request.get("effort"))
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start_wall) * 1000)
    return {"ms": wall, "cpu_ms": cpu, "outcome": outcome}


def _outputs(candidate: str, request: dict[str, Any]) -> dict[str, Any]:
    from PIL import Image

    data = Path(request["input"]).read_bytes()
    outcome, outputs = _run(candidate, data, request.get("effort"))
    directory = Path(request["dir"])
    directory.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {}
    for name, blob in outputs.items():
        path = directory / f"{name}.webp"
        path.write_bytes(blob)
        with Image.open(path) as image:
            found[name] = {"path": str(path), "bytes": len(blob), "size": list(image.size)}
    return {"outcome": outcome, "outputs": found}


def serve(candidate: str) -> int:
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "info": lambda _req: image_candidates.prepare(candidate),
        "time": lambda req: _time(candidate, req),
        "outputs": lambda req: _outputs(candidate, req),
        "calibrate": lambda req: image_candidates.calibrate_pyvips_effort(
            Path(req["input"]).read_bytes(), int(req.get("repeat", 3))),
    }
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": True, "result": handlers[request["op"]](request)}
        except Exception as exc:  # reported to the parent, which fails the benchmark
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def rss(candidate: str, input_path: str, effort: int | None) -> int:
    image_candidates.prepare(candidate)
    import worker.imaging  # noqa: F401  - imports are not the job's memory

    data = Path(input_path).read_bytes()
    reset = memory.reset_peak()
    before = memory.rss_kib()
    start = time.perf_counter()
    outcome, _ = _run(candidate, data, effort)
    ms = (time.perf_counter() - start) * 1000
    peak = memory.peak_kib()
    print(json.dumps({"before_kib": before, "peak_kib": peak, "increase_kib": peak - before,
                      "reset_ok": reset, "outcome": outcome, "ms": ms}))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "serve":
        return serve(argv[1])
    if len(argv) >= 3 and argv[0] == "rss":
        effort = int(argv[3]) if len(argv) > 3 else None
        return rss(argv[1], argv[2], effort)
    print("usage: python -m bench.child serve CANDIDATE | rss CANDIDATE INPUT [EFFORT]",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
