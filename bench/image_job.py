"""Benchmark 1: the image job's pipeline against naive Pillow and pyvips.

Each candidate lives in its own ``bench.child`` process (pyvips' with ``VIPS_CONCURRENCY=1``
so that every candidate uses one core); rounds rotate the candidates' order, and each
round runs every candidate once on every input. Peak RSS is measured separately, in a
fresh process per candidate and input. PSNR compares each large output with a LANCZOS
resample of the full decode to the output's own size (:mod:`bench.quality`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import inputs, quality
from bench.procs import PYVIPS_PACKAGES, Child, clean_env, python_command, run_json
from bench.report import BenchConfig, BenchResult, Goal
from bench.stats import median, ratio, rotations, summary

CANDIDATES = ("offload", "naive", "pyvips")
INPUTS = ("2mp_jpeg", "12mp_jpeg", "24mp_jpeg", "12mp_png")


def _command(candidate: str, *args: str) -> list[str]:
    packages = PYVIPS_PACKAGES if candidate == "pyvips" else ()
    return python_command("-m", "bench.child", *args, with_packages=packages)


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
    rounds, rss_repeat = (1, 1) if config.quick else (10, 3)
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
                                    dir=str(config.workdir / "outputs" / c / n))["outputs"]
                for n in INPUTS}
            for c in CANDIDATES
        }
    finally:
        for child in children.values():
            child.close()
    rss = {c: {n: _rss_mb(c, paths[n], efforts[c], rss_repeat) if n in rss_inputs else math.nan
               for n in INPUTS}
           for c in CANDIDATES}
    psnr = {c: {n: quality.psnr_of_webp(Path(outputs[c][n]["large"]["path"]).read_bytes(),
                                        paths[n].read_bytes())
                for n in INPUTS}
            for c in CANDIDATES}
    return _result(ms, cpu, rss, psnr, outputs, versions, calibration, rounds)


def _result(ms: dict[str, dict[str, list[float]]], cpu: dict[str, dict[str, list[float]]],
            rss: dict[str, dict[str, float]], psnr: dict[str, dict[str, float]],
            outputs: dict[str, dict[str, Any]], versions: dict[str, Any],
            calibration: dict[str, Any], rounds: int) -> BenchResult:
    med = {c: {n: median(ms[c][n]) for n in INPUTS} for c in CANDIDATES}
    rows = []
    for name in INPUTS:
        for c in CANDIDATES:
            large, thumb = outputs[c][name]["large"], outputs[c][name]["thumbnail"]
            rows.append([
                name, c, med[c][name], median(cpu[c][name]),
                ratio(med[c][name], med["offload"][name]),
                rss[c][name],
                f"{large['size'][0]}x{large['size'][1]}",
                large["bytes"] // 1024, thumb["bytes"] // 1024, psnr[c][name],
            ])
    goals = _goals(med, rss, psnr)
    return BenchResult(
        name="image_job",
        title="1. Image job (ms/image, single-threaded)",
        headers=["input", "candidate", "median ms", "cpu ms", "x offload", "peak RSS +MB",
                 "large", "large KiB", "thumb KiB", "PSNR dB"],
        rows=rows,
        goals=goals,
        notes=[f"{rounds} interleaved rounds per input; pyvips WebP effort "
               f"{calibration['effort']} (fastest within 10% of effort 4's size on 12 MP)"],
        data={"ms": {c: {n: summary(ms[c][n]) for n in INPUTS} for c in CANDIDATES},
              "cpu_ms": {c: {n: median(cpu[c][n]) for n in INPUTS} for c in CANDIDATES},
              "rss_increase_mb": rss, "psnr_large_db": psnr, "outputs": outputs,
              "versions": versions, "pyvips_calibration": calibration,
              "raw_ms": ms},
    )


def _goals(med: dict[str, dict[str, float]], rss: dict[str, dict[str, float]],
           psnr: dict[str, dict[str, float]]) -> list[Goal]:
    goals = []
    for name in ("12mp_jpeg", "24mp_jpeg"):
        r = ratio(med["offload"][name], med["pyvips"][name])
        goals.append(Goal(f"{name}: at or below pyvips' time",
                          f"{med['offload'][name]:.0f} ms vs {med['pyvips'][name]:.0f} ms "
                          f"= {r:.2f}x", r <= 1.0))
    speedup = ratio(med["naive"]["12mp_jpeg"], med["offload"]["12mp_jpeg"])
    goals.append(Goal(">= 2.7x faster than naive Pillow on 12mp_jpeg", f"{speedup:.2f}x",
                      speedup >= 2.7))
    worst = min(psnr["offload"][n] - psnr["naive"][n] for n in INPUTS)
    goals.append(Goal("PSNR within 0.5 dB of naive (every input)",
                      f"worst offload - naive = {worst:+.2f} dB",
                      not math.isnan(worst) and worst >= -0.5))
    goals.append(Goal("peak RSS increase <= 50 MB on 12mp_jpeg",
                      f"{rss['offload']['12mp_jpeg']:.1f} MB",
                      rss["offload"]["12mp_jpeg"] <= 50))
    return goals
