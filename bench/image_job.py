"""Benchmark 1: the image job's pipeline against naive Pillow and pyvips.

Each candidate lives in its own ``bench.child`` process (with ``VIPS_CONCURRENCY=1`` so
that every candidate uses one core); rounds rotate the candidates' order, and each round
runs every candidate once on every input. Peak RSS is measured separately, in a fresh
process per candidate and input. PSNR and SSIM compare each large output with a
colour-managed LANCZOS resample of the full decode to the output's own size
(:mod:`bench.quality`). A candidate that cannot read an input (pyvips-binary and HEIC)
shows NaN for it, and the goals compare only what both sides produced.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import inputs, quality
from bench.procs import Child, clean_env, python_command, run_json
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations, summary

CANDIDATES = ("offload", "naive", "pyvips")
INPUTS = ("2mp_jpeg", "4mp_jpeg", "12mp_jpeg", "24mp_jpeg", "12mp_p3_jpeg", "12mp_png",
          "12mp_rgba_png", "16mp_webp", "12mp_heic")
# Peak RSS goals by input size: +50 MB up to 12 MP (and the 16 MP WebP, decoded shrunk),
# +100 MB at 24 MP.
RSS_LIMIT_MB = {"24mp_jpeg": 100.0}
RSS_DEFAULT_LIMIT_MB = 50.0
PSNR_MARGIN_DB = 0.5
SIZE_MARGIN = 1.10


def _command(candidate: str, *args: str) -> list[str]:
    return python_command("-m", "bench.child", *args)


def _env() -> dict[str, str]:
    return clean_env(VIPS_CONCURRENCY="1", OMP_NUM_THREADS="1")


def _rss_mb(candidate: str, path: Path, effort: int | None, repeat: int) -> float:
    """Median peak-RSS increase over ``repeat`` fresh processes, in MB (10^6 bytes)."""
    args = ["rss", candidate, str(path)] + ([str(effort)] if effort is not None else [])
    samples = []
    for _ in range(repeat):
        found = run_json(_command(candidate, *args), _env())
        samples.append(found["increase_kib"] * 1024 / 1e6)
    return median(samples)


def run(config: BenchConfig) -> BenchResult:
    rounds, rss_repeat = (1, 1) if config.quick else (7, 3)
    rss_inputs = ("12mp_jpeg",) if config.quick else INPUTS
    paths = inputs.make_inputs(inputs.cache_dir(), list(INPUTS))
    children = {c: Child(_command(c, "serve", c), _env()) for c in CANDIDATES}
    try:
        versions = {c: child.call("info") for c, child in children.items()}
        calibration = children["pyvips"].call("calibrate", input=str(paths["12mp_jpeg"]),
                                              repeat=1 if config.quick else 3)
        efforts: dict[str, int | None] = dict.fromkeys(CANDIDATES)
        efforts["pyvips"] = calibration["effort"]
        for name in INPUTS:  # warm-up: first calls load codecs and fault pages in
            for c in CANDIDATES:
                children[c].call("time", input=str(paths[name]), effort=efforts[c])
        ms: dict[str, dict[str, list[float]]] = {c: {n: [] for n in INPUTS} for c in CANDIDATES}
        cpu: dict[str, dict[str, list[float]]] = {c: {n: [] for n in INPUTS}
                                                  for c in CANDIDATES}
        for order in rotations(list(CANDIDATES), rounds):
            for name in INPUTS:
                for c in order:
                    got = children[c].call("time", input=str(paths[name]), effort=efforts[c])
                    ms[c][name] += got["ms"]
                    cpu[c][name] += got["cpu_ms"]
        outputs = {
            c: {n: children[c].call("outputs", input=str(paths[n]), effort=efforts[c],
                                    dir=str(config.workdir / "outputs" / c / n))
                for n in INPUTS}
            for c in CANDIDATES
        }
    finally:
        for child in children.values():
            child.close()
    rss = {c: {n: _rss_mb(c, paths[n], efforts[c], rss_repeat) if n in rss_inputs else math.nan
               for n in INPUTS}
           for c in CANDIDATES}
    scores = {c: {n: _scores(outputs[c][n], paths[n]) for n in INPUTS} for c in CANDIDATES}
    return _result(ms, cpu, rss, scores, outputs, versions, calibration, rounds)


def _scores(found: dict[str, Any], source: Path) -> tuple[float, float]:
    """PSNR and SSIM of the large output (NaN when the candidate produced none)."""
    if "large" not in found["outputs"]:
        return math.nan, math.nan
    webp = Path(found["outputs"]["large"]["path"]).read_bytes()
    return quality.scores_of_webp(webp, source.read_bytes())


def _result(ms: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]],
            rss: dict[str, dict[str, float]], scores: dict[str, dict[str, tuple[float, float]]],
            outputs: dict[str, dict[str, Any]], versions: dict[str, Any],
            calibration: dict[str, Any], rounds: int) -> BenchResult:
    med = {c: {n: median(cpu[c][n]) if outputs[c][n]["outputs"] else math.nan
               for n in INPUTS} for c in CANDIDATES}
    rows = []
    for name in INPUTS:
        for c in CANDIDATES:
            found = outputs[c][name]["outputs"]
            large, thumb = found.get("large"), found.get("thumbnail")
            rows.append([
                name, c, median(ms[c][name]), med[c][name],
                ratio(med[c][name], med["pyvips"][name]),
                rss[c][name],
                f"{large['size'][0]}x{large['size'][1]}" if large else "-",
                large["bytes"] // 1024 if large else math.nan,
                thumb["bytes"] // 1024 if thumb else math.nan,
                scores[c][name][0], scores[c][name][1],
            ])
    return BenchResult(
        name="image_job",
        title="1. Image job (CPU ms/image, single-threaded)",
        headers=["input", "candidate", "median ms", "cpu ms", "cpu x pyvips", "peak RSS +MB",
                 "large", "large KiB", "thumb KiB", "PSNR dB", "SSIM"],
        rows=rows,
        goals=_goals(med, rss, scores, outputs),
        notes=[f"{rounds} interleaved rounds per input; pyvips WebP effort "
               f"{calibration['effort']} (fastest within 10% of effort 4's size on 12 MP)",
               "cpu ms is the median CPU time of the call (the fair measure on a shared "
               "machine); NaN: the candidate could not read the input",
               *[f"{c} on {n}: {' '.join(outputs[c][n]['outcome'].split())[:90]}"
                 for c in CANDIDATES
                 for n in INPUTS if not outputs[c][n]["outputs"]]],
        data={"ms": {c: {n: summary(ms[c][n]) for n in INPUTS} for c in CANDIDATES},
              "cpu_ms": med, "rss_increase_mb": rss,
              "psnr_large_db": {c: {n: scores[c][n][0] for n in INPUTS} for c in CANDIDATES},
              "ssim_large": {c: {n: scores[c][n][1] for n in INPUTS} for c in CANDIDATES},
              "outputs": outputs, "versions": versions, "pyvips_calibration": calibration,
              "raw_ms": ms, "raw_cpu_ms": cpu},
    )


def _goals(med: dict[str, dict[str, float]], rss: dict[str, dict[str, float]],
           scores: dict[str, dict[str, tuple[float, float]]],
           outputs: dict[str, dict[str, Any]]) -> list[Goal]:
    goals = []
    for name in INPUTS:
        if math.isnan(med["pyvips"][name]):
            goals.append(Goal(f"{name}: processed (pyvips cannot read it)",
                              outputs["offload"][name]["outcome"][:60],
                              outputs["offload"][name]["outcome"] == "ok"))
            continue
        r = ratio(med["offload"][name], med["pyvips"][name])
        goals.append(Goal(f"{name}: CPU at or below pyvips'",
                          f"{med['offload'][name]:.0f} vs {med['pyvips'][name]:.0f} ms "
                          f"= {r:.2f}x", r <= 1.0))
    speedup = ratio(med["naive"]["12mp_jpeg"], med["offload"]["12mp_jpeg"])
    goals.append(Goal(">= 2.7x faster than naive Pillow on 12mp_jpeg", f"{speedup:.2f}x",
                      speedup >= 2.7))
    compared = [n for n in INPUTS if not math.isnan(scores["pyvips"][n][0])]
    worst = min(scores["offload"][n][0] - scores["pyvips"][n][0] for n in compared)
    goals.append(Goal(f"PSNR within {PSNR_MARGIN_DB} dB of pyvips or better (every input)",
                      f"worst offload - pyvips = {worst:+.2f} dB",
                      not math.isnan(worst) and worst >= -PSNR_MARGIN_DB))
    sizes = {n: outputs["offload"][n]["outputs"]["large"]["bytes"]
             / outputs["pyvips"][n]["outputs"]["large"]["bytes"] for n in compared}
    biggest = max(sizes, key=lambda n: sizes[n])
    goals.append(Goal("large output within 10% of pyvips' size (every input)",
                      f"largest ratio {sizes[biggest]:.2f} ({biggest})",
                      sizes[biggest] <= SIZE_MARGIN))
    over = {n: rss["offload"][n] for n in INPUTS if not math.isnan(rss["offload"][n])
            and rss["offload"][n] > RSS_LIMIT_MB.get(n, RSS_DEFAULT_LIMIT_MB)}
    measured = ", ".join(f"{n} {rss['offload'][n]:.0f}" for n in INPUTS
                         if not math.isnan(rss["offload"][n]))
    goals.append(Goal("peak RSS increase <= 50 MB (12 MP), <= 100 MB (24 MP)",
                      f"{measured} MB", not over))
    return goals
