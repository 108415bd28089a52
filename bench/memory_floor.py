"""The memory floor of the two inputs over issue 16's +50 MB goal: what the decoder or
encoder alone adds to peak RSS, each step in a fresh process.

``python -m bench.memory_floor`` prints one row per step:

- 12 MP HEIC: the whole job; the decode alone (pillow-heif, RGB, what any engine here
  starts from); Pillow's open and load.
- 12 MP RGBA PNG: the whole job; the 2048x1536 RGBA large output's WebP encode alone, by
  libvips (effort 2, as the job) and by Pillow (method 0, 2 and 4), from an image already
  in memory.

Peak RSS increase as in ``image_job``: ``/proc/self/clear_refs`` resets the high-water
mark after imports, reading the input and ``malloc_trim``.
"""

from __future__ import annotations

import ctypes
import io
import os
import subprocess
import sys
from typing import Any

from bench.inputs import cache_dir, make_inputs
from bench.memory import peak_kib, reset_peak, rss_kib

STEPS: dict[str, tuple[str, str]] = {
    "heic: the job": ("12mp_heic", "job"),
    "heic: decode alone (pillow-heif)": ("12mp_heic", "heif_decode"),
    "heic: Pillow open + load": ("12mp_heic", "pillow_load"),
    "rgba png: the job": ("12mp_rgba_png", "job"),
    "rgba png: large WebP, libvips effort 2": ("12mp_rgba_png", "vips_webp"),
    "rgba png: large WebP, Pillow method 0": ("12mp_rgba_png", "pillow_webp_0"),
    "rgba png: large WebP, Pillow method 2": ("12mp_rgba_png", "pillow_webp_2"),
    "rgba png: large WebP, Pillow method 4": ("12mp_rgba_png", "pillow_webp_4"),
}


def _probe(name: str, how: str) -> float:
    """Run one step in this process; its peak RSS increase in MB."""
    import pyvips  # type: ignore[import-untyped]
    from PIL import Image

    from worker import imaging

    data = make_inputs(cache_dir(), [name])[name].read_bytes()
    pyvips.cache_set_max(0)
    large: Any = None
    if "webp" in how:
        large = pyvips.Image.thumbnail_buffer(data, 2048).copy_memory()
        if how.startswith("pillow"):
            large = Image.frombuffer("RGBA", (large.width, large.height),
                                     large.write_to_memory(), "raw", "RGBA", 0, 1)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = rss_kib()
    reset_peak()
    if how == "job":
        imaging.process_image(data, max_pixels=50_000_000)
    elif how == "heif_decode":
        import pillow_heif

        heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=True)
        assert len(heif[0].data) == heif[0].size[0] * heif[0].size[1] * 3
    elif how == "pillow_load":
        Image.open(io.BytesIO(data)).load()
    elif how == "vips_webp":
        large.webpsave_buffer(Q=80, effort=2, strip=True)
    else:
        large.save(io.BytesIO(), "WEBP", quality=80, method=int(how.rsplit("_", 1)[1]))
    return (peak_kib() - base) / 1024


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        print(f"{_probe(sys.argv[2], sys.argv[3]):.1f}")
        return
    print("| step | peak RSS +MB |\n|---|---|")
    for label, (name, how) in STEPS.items():
        out = subprocess.run([sys.executable, "-m", "bench.memory_floor", "--probe", name, how],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "VIPS_CONCURRENCY": "1"}).stdout
        print(f"| {label} | {out.strip().splitlines()[-1]} |")


if __name__ == "__main__":
    main()
