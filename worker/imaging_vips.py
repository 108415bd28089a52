"""The libvips engine (pyvips): PNG, WebP, TIFF and AVIF, and JPEGs that need a resample
after DCT scaling, where libvips decodes faster or shrinks while decoding and Pillow cannot
(or resamples faster).

``thumbnail_source`` decodes once, shrinking on load where the format allows (JPEG, WebP),
streams PNG rows through the resampler instead of holding the full decode, applies EXIF
orientation, and converts an embedded ICC profile to sRGB after the shrink. The thumbnail
is derived from the large output in memory.

libvips is set up once per process, on first use: one thread per operation (a worker runs
several image jobs at once, each in its own thread, at most one per CPU:
``worker.tasks.images.ImageSlot``), no operation cache (every upload is new bytes: a cache
would only hold memory), and only the loaders named in ``LOADERS`` enabled.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from worker.imaging_base import (
    WEBP_METHOD,
    WEBP_QUALITY,
    EncodedImage,
    ImageRejected,
    check_pixels,
)

# Pillow's name for the format -> the libvips loader that must be the one to read it (a
# file that libvips would read with another loader is refused, not guessed at).
LOADERS: dict[str, str] = {
    "PNG": "pngload_source",
    "WEBP": "webpload_source",
    "TIFF": "tiffload_source",
    "AVIF": "heifload_source",
    "JPEG": "jpegload_source",
    "MPO": "jpegload_source",
}
_OPERATIONS = ("VipsForeignLoadPng", "VipsForeignLoadWebp", "VipsForeignLoadTiff",
               "VipsForeignLoadHeif", "VipsForeignLoadJpeg")
# libvips' threads per operation; parallelism comes from concurrent jobs.
THREADS = 1
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter

_SETUP = threading.Lock()
_pyvips: Any = None


def vips() -> Any:
    """The pyvips module, set up for the worker on first use (see the module's doc)."""
    global _pyvips
    with _SETUP:
        if _pyvips is None:
            # Read by libvips as it starts (before the first operation).
            os.environ.setdefault("VIPS_CONCURRENCY", str(THREADS))
            import pyvips  # type: ignore[import-untyped]

            pyvips.concurrency_set(THREADS)
            pyvips.cache_set_max(0)
            pyvips.cache_set_max_mem(0)
            pyvips.cache_set_max_files(0)
            pyvips.block_untrusted_set(True)
            pyvips.operation_block_set("VipsForeignLoad", True)
            for operation in _OPERATIONS:
                pyvips.operation_block_set(operation, False)
            _pyvips = pyvips
        return _pyvips


def load_large(data: bytes, fmt: str, *, side: int, max_pixels: int
               ) -> tuple[Any, tuple[int, int]]:
    """``data`` (identified by Pillow as ``fmt``) shrunk to ``side``, upright, 8-bit sRGB
    (3 bands, 4 with alpha) in memory; with the source's upright size."""
    pyvips = vips()
    try:
        options: dict[str, Any] = {"size": "down", "option_string": "fail_on=error"}
        size = _check_header(pyvips, data, fmt, max_pixels, options)
        # From a source over the bytes, not a buffer: pyvips copies a buffer it is given.
        large = pyvips.Image.thumbnail_source(pyvips.Source.new_from_memory(data), side,
                                              **options)
        return _srgb8(large).copy_memory(), size
    except pyvips.Error as exc:
        raise ImageRejected(f"image is truncated or corrupt ({_reason(exc)})") from exc


def shrink(image: Any, side: int) -> Any:
    """``image`` (in memory) shrunk to a long side of at most ``side``."""
    if max(image.width, image.height) <= side:
        return image
    return image.thumbnail_image(side, size="down")


def encode(image: Any) -> EncodedImage:
    """Lossy WebP of an 8-bit sRGB image, with no metadata."""
    pyvips = vips()
    try:
        data = image.webpsave_buffer(Q=WEBP_QUALITY, effort=WEBP_METHOD, keep="none")
    except pyvips.Error as exc:
        raise ImageRejected(f"image could not be encoded ({_reason(exc)})") from exc
    return EncodedImage(data, image.width, image.height)


def _srgb8(image: Any) -> Any:
    """RGB or RGBA with 8 bits a band: grey, 16-bit and CMYK images converted."""
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.bands not in (3, 4):
        raise ImageRejected(f"unsupported pixel layout ({image.bands} bands, "
                            f"{image.interpretation})")
    return image


def _check_header(pyvips: Any, data: bytes, fmt: str, max_pixels: int,
                  options: dict[str, Any]) -> tuple[int, int]:
    """The upright size from libvips' own reading of the header, checked again (two
    parsers must agree on what is allowed), and the colour conversion ``options`` need.
    The header image is let go on return: kept, its loader holds decode buffers."""
    header = pyvips.Image.new_from_source(pyvips.Source.new_from_memory(data), "",
                                          access="sequential")
    loader = header.get("vips-loader")
    if loader != LOADERS[fmt]:
        raise ImageRejected(f"not a readable image (a {fmt} that reads as {loader})")
    size = _upright_size(header)
    check_pixels(size, max_pixels)
    if header.get_typeof("icc-profile-data") or header.interpretation == "cmyk":
        options["export_profile"] = "srgb"
    return size


def _upright_size(header: Any) -> tuple[int, int]:
    width, height = header.width, header.height
    if header.get_typeof("orientation") and header.get("orientation") in _SWAPS_SIDES:
        return height, width
    return width, height


def _reason(exc: Exception) -> str:
    """libvips' most specific line (its last: the loader's own words), shortened."""
    text = str(exc).strip()
    return text.splitlines()[-1][:200] if text else type(exc).__name__
