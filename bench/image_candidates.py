"""The image-job candidates. Each turns uploaded bytes into ``{"large", "thumbnail"}`` WebPs.

- ``offload``: the product's pipeline, :func:`worker.imaging.process_image`: the same work
  the job does (``prepare_image`` then ``encode_large``; the job runs the two steps in
  turn, storing the thumbnail while the second runs, and adds the S3 download and uploads).
- ``naive``: what a first version would do: open (HEIC through pillow-heif's plugin),
  convert, LANCZOS resize from the full decode for each output, WebP at Pillow's default
  ``method`` (4); no colour management.
- ``pyvips``: libvips' ``thumbnail_buffer`` (decodes once, shrinking on load), converted to
  sRGB when the input has a profile (as sharp does), the thumbnail derived from the large
  image, WebP at the fastest ``effort`` whose output is within 10 % of the default's size
  (chosen by :func:`calibrate_pyvips_effort`). pyvips-binary's libvips has no HEVC
  decoder: it cannot read HEIC.

All use WebP quality 80, a 2048 px large side and a 256 px thumbnail side. Each candidate
runs in its own process (``bench.child``), so libvips' settings in one (the product sets
its own on first use: worker/imaging_vips.py) never reach another.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

LARGE_SIDE = 2048
THUMB_SIDE = 256
QUALITY = 80
MAX_PIXELS = 50_000_000  # shared.config.Settings.image_max_pixels's default
DEFAULT_EFFORT = 4  # libwebp's (Pillow's method, libvips' effort)
SIZE_TOLERANCE = 1.10

Outputs = dict[str, bytes]


def offload(data: bytes, effort: int | None = None) -> Outputs:
    from worker.imaging import process_image

    result = process_image(data, max_pixels=MAX_PIXELS, large_side=LARGE_SIDE,
                           thumb_side=THUMB_SIDE)
    return {name: out.data for name, out in result.outputs.items()}


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    width, height = size
    if max(size) <= side:
        return size
    scale = side / max(size)
    return max(1, round(width * scale)), max(1, round(height * scale))


def naive(data: bytes, effort: int | None = None) -> Outputs:
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    outputs: Outputs = {}
    for name, side in (("large", LARGE_SIDE), ("thumbnail", THUMB_SIDE)):
        size = _fit(rgb.size, side)
        out = rgb if size == rgb.size else rgb.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        out.save(buffer, "WEBP", quality=QUALITY)
        outputs[name] = buffer.getvalue()
    return outputs


def pyvips_outputs(data: bytes, effort: int | None = None) -> Outputs:
    import pyvips  # type: ignore[import-untyped]

    effort = DEFAULT_EFFORT if effort is None else effort
    header = pyvips.Image.new_from_buffer(data, "")
    colour = {"export_profile": "srgb"} if header.get_typeof("icc-profile-data") else {}
    # Decoded once (shrink-on-load), held in memory so the thumbnail reads pixels, not the
    # JPEG again (a sequential-access source cannot be read twice).
    large = pyvips.Image.thumbnail_buffer(data, LARGE_SIDE, size="down",
                                          **colour).copy_memory()
    thumb = large.thumbnail_image(THUMB_SIDE, size="down")
    return {
        name: image.webpsave_buffer(Q=QUALITY, effort=effort, keep="none")
        for name, image in (("large", large), ("thumbnail", thumb))
    }


CANDIDATES: dict[str, Callable[..., Outputs]] = {
    "offload": offload,
    "naive": naive,
    "pyvips": pyvips_outputs,
}


def prepare(candidate: str) -> dict[str, Any]:
    """Set the candidate's process up for a fair single-threaded run; return its versions."""
    from PIL import Image, features

    Image.init()
    info: dict[str, Any] = {
        "pillow": features.version("pil"),
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "zlib": features.version("zlib"),
    }
    if candidate == "pyvips":
        import pyvips

        # No operation cache: a repeated call on the same bytes would otherwise be served
        # from it. (VIPS_CONCURRENCY=1 in the environment keeps libvips on one thread.)
        pyvips.cache_set_max(0)
        info["pyvips"] = pyvips.__version__
        info["libvips"] = ".".join(str(pyvips.version(i)) for i in range(3))
    if candidate == "offload":
        import pillow_heif

        from worker.imaging_vips import vips

        vips()  # libvips loaded and set up, as in a worker after its first image
        info["pillow_heif"] = pillow_heif.__version__
        info["libheif"] = pillow_heif.libheif_version()
    return info


def calibrate_pyvips_effort(data: bytes, repeat: int = 3) -> dict[str, Any]:
    """The fastest WebP effort whose large output is within 10 % of the default effort's
    size, measured on ``data``; with every effort's median time and size."""
    measured: dict[int, tuple[float, int]] = {}
    for effort in range(0, DEFAULT_EFFORT + 1):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            outputs = pyvips_outputs(data, effort)
            times.append(time.perf_counter() - start)
        measured[effort] = (sorted(times)[len(times) // 2] * 1000, len(outputs["large"]))
    default_size = measured[DEFAULT_EFFORT][1]
    admissible = [e for e, (_, size) in measured.items()
                  if size <= SIZE_TOLERANCE * default_size]
    chosen = min(admissible, key=lambda e: measured[e][0])
    return {
        "effort": chosen,
        "by_effort": {str(e): {"ms": ms, "bytes": size} for e, (ms, size) in measured.items()},
    }
