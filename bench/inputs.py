"""Benchmark inputs made here: photo-like JPEG, PNG (RGB and RGBA), WebP, HEIC and Display P3
JPEG at a given pixel count, and PNG bombs."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

# The sizes: 4:3 frames as cameras make them (4032x3024: a 12 MP phone camera).
SIZES: dict[str, tuple[int, int]] = {
    "2mp": (1632, 1224),
    "4mp": (2560, 1600),
    "12mp": (4000, 3000),
    "16mp": (4608, 3456),
    "24mp": (6000, 4000),
}
_COLOURS = ((200, 40, 40), (40, 170, 60), (40, 60, 200), (230, 210, 40), (240, 240, 240))


def photo_like(size: tuple[int, int], seed: int = 7) -> Image.Image:
    """An RGB picture with detail at every scale: smooth gradients (sky), hard-edged shapes
    (buildings, text), and sensor-like grain. A flat or noise-only image would flatter or
    punish the codecs in ways photographs do not."""
    width, height = size
    gradient = Image.linear_gradient("L")
    base = Image.merge("RGB", (
        gradient.resize(size),
        Image.radial_gradient("L").resize(size),
        gradient.rotate(90).resize(size),
    ))
    draw = ImageDraw.Draw(base)
    step = max(1, min(width, height) // 60)
    for i in range(60):
        x = (i * 7919 * seed) % width
        y = (i * 104729 + seed) % height
        colour = _COLOURS[i % len(_COLOURS)]
        if i % 3 == 0:
            draw.ellipse((x, y, x + width // 7, y + height // 9), fill=colour)
        elif i % 3 == 1:
            draw.rectangle((x, y, x + width // 11, y + height // 5), outline=colour, width=step)
        else:
            draw.line((x, 0, width - x, height), fill=colour, width=max(1, step // 3))
    grain = Image.effect_noise(size, 28).convert("RGB")
    return Image.blend(base, grain, 0.12)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def cache_dir() -> Path:
    """Where generated inputs are kept between runs (``$XDG_CACHE_HOME/offload-bench``), so
    runs compare on the same bytes and do not pay ~8 s to draw them again."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "offload-bench" / "inputs-v1"


def _with_alpha(picture: Image.Image) -> Image.Image:
    """``picture`` with a soft, everywhere-varying alpha (a cut-out with feathered edges)."""
    alpha = Image.radial_gradient("L").resize(picture.size)
    rgba = picture.convert("RGBA")
    rgba.putalpha(alpha.point(lambda v: 255 - v))
    return rgba


def _heic(picture: Image.Image) -> bytes:
    from pillow_heif import from_pillow

    buffer = io.BytesIO()
    from_pillow(picture).save(buffer, quality=85)
    return buffer.getvalue()


def _render(name: str) -> bytes:
    size_name, kind = name.split("_", 1)
    picture = photo_like(SIZES[size_name])
    if kind == "jpeg":
        return encode(picture, "JPEG", quality=90)
    if kind == "p3_jpeg":  # the same pixels, tagged Display P3 as an iPhone's would be
        from bench.icc import display_p3

        return encode(picture, "JPEG", quality=90, icc_profile=display_p3())
    if kind == "png":
        return encode(picture, "PNG", compress_level=6)
    if kind == "rgba_png":
        return encode(_with_alpha(picture), "PNG", compress_level=6)
    if kind == "webp":  # high-quality lossy: what an editor's "export as WebP" gives
        return encode(picture, "WEBP", quality=95, method=4)
    if kind == "heic":
        return _heic(picture)
    raise ValueError(f"unknown input {name!r}")


SUFFIXES = {"jpeg": "jpeg", "p3_jpeg": "jpeg", "png": "png", "rgba_png": "png",
            "webp": "webp", "heic": "heic"}


def make_inputs(directory: Path, names: list[str]) -> dict[str, Path]:
    """Write the named inputs (``{size}_{kind}``: ``12mp_jpeg``, ``12mp_p3_jpeg``,
    ``12mp_png``, ``12mp_rgba_png``, ``16mp_webp``, ``12mp_heic``...) to ``directory``; an
    input already there is reused."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in names:
        path = directory / f"{name}.{SUFFIXES[name.split('_', 1)[1]]}"
        if not path.exists():
            path.write_bytes(_render(name))
        paths[name] = path
    return paths


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR of an 8-bit RGB PNG of ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` and carries one empty IDAT: a bomb that costs
    nothing to send, and everything to a decoder that trusts its header."""
    return png_header(width, height) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def black_png(width: int, height: int) -> bytes:
    """A whole, valid all-black RGB PNG, compressed row by row without ever holding the
    pixels: 12000 x 10000 is 360 MB decoded and about 350 KB on disk."""
    row = b"\x00" * (1 + 3 * width)  # filter byte 0, then black pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    idat = b"".join(parts)
    return png_header(width, height) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
