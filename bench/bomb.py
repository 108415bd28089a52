"""Benchmark 2: decompression bombs are refused cheaply.

Two PNGs: a whole 12000x10000 image (120 MP, 360 MB decoded, ~350 KB on disk) and a
header claiming 100000x100000 with no pixels. The product's pipeline must refuse both
from the header, in under 30 ms and 10 MB. Timings come from the offload candidate's
process, alternating the two inputs; memory from a fresh process per input. The naive
pipeline (no pixel check before decoding) is measured once per input for contrast.
"""

from __future__ import annotations

from pathlib import Path

from bench import inputs
from bench.image_job import _command, _env
from bench.procs import Child, run_json
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, summary

BOMBS: dict[str, tuple[int, int, bool]] = {
    # name: width, height, with pixels
    "png_12000x10000": (12000, 10000, True),
    "png_100000x100000_header_only": (100000, 100000, False),
}
TIME_LIMIT_MS = 30.0
MEMORY_LIMIT_MB = 10.0


def make_bombs(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (width, height, whole) in BOMBS.items():
        path = directory / f"{name}.png"
        if not path.exists():
            data = (inputs.black_png(width, height) if whole
                    else inputs.header_only_png(width, height))
            path.write_bytes(data)
        paths[name] = path
    return paths


def _fresh(candidate: str, path: Path, repeat: int) -> tuple[float, float, str]:
    """Median peak-RSS increase (MB) and time (ms) over ``repeat`` fresh processes."""
    found = [run_json(_command(candidate, "rss", candidate, str(path)), _env(), timeout=600)
             for _ in range(repeat)]
    return (median([f["increase_kib"] * 1024 / 1e6 for f in found]),
            median([f["ms"] for f in found]), found[-1]["outcome"])


def run(config: BenchConfig) -> BenchResult:
    rounds, repeat = (3, 5) if config.quick else (20, 5)
    paths = make_bombs(inputs.cache_dir())
    ms: dict[str, list[float]] = {name: [] for name in BOMBS}
    outcomes: dict[str, str] = {}
    with Child(_command("offload", "serve", "offload"), _env()) as child:
        child.call("info")
        for _ in range(rounds):
            for name in BOMBS:
                got = child.call("time", input=str(paths[name]), repeat=repeat)
                ms[name] += got["ms"]
                outcomes[name] = got["outcome"]
    rows, goals, data = [], [], {}
    for name in BOMBS:
        rss_mb, fresh_ms, _ = _fresh("offload", paths[name], 1 if config.quick else 3)
        naive = ("-", "-", "(not run in --quick)")
        if not config.quick:
            n_mb, n_ms, n_outcome = _fresh("naive", paths[name], 1)
            naive = (f"{n_ms:.0f}", f"{n_mb:.0f}", n_outcome[:60])
        refused = outcomes[name].startswith("refused")
        med = median(ms[name])
        rows.append([name, paths[name].stat().st_size // 1024, med, fresh_ms, rss_mb,
                     outcomes[name][:70], *naive])
        goals.append(Goal(f"{name} refused in < {TIME_LIMIT_MS:.0f} ms and < "
                          f"{MEMORY_LIMIT_MB:.0f} MB",
                          f"{'refused' if refused else 'NOT refused'}, {med:.2f} ms warm, "
                          f"{fresh_ms:.1f} ms in a fresh process, +{rss_mb:.1f} MB",
                          refused and max(med, fresh_ms) < TIME_LIMIT_MS
                          and rss_mb < MEMORY_LIMIT_MB))
        data[name] = {"ms": summary(ms[name]), "fresh_process_ms": fresh_ms,
                      "rss_increase_mb": rss_mb, "outcome": outcomes[name],
                      "naive": naive, "file_bytes": paths[name].stat().st_size}
    return BenchResult(
        name="bomb",
        title="2. Decompression bombs (offload's pipeline; naive Pillow for contrast)",
        headers=["input", "file KiB", "median ms (warm)", "ms (fresh process)",
                 "peak RSS +MB", "outcome", "naive ms", "naive RSS +MB", "naive outcome"],
        rows=rows, goals=goals,
        notes=[f"{rounds} alternating rounds of {repeat} refusals per input"],
        data=data,
    )
