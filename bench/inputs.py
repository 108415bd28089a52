"""Benchmark inputs made here: photo-like JPEG/PNG at a given pixel count, and PNG bombs."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

# The sizes: 4:3 frames as cameras make them.
SIZES: dict[str, tuple[int, int]] = {
    "2mp": (1632, 1224),
    "12mp": (4000, 3000),
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


def make_inputs(directory: Path, names: list[str]) -> dict[str, Path]:
    """Write the named inputs (``2mp_jpeg``, ``12mp_jpeg``, ``24mp_jpeg``, ``12mp_png``) to
    ``directory``; an input already there is reused."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in names:
        size_name, fmt = name.split("_")
        path = directory / f"{name}.{fmt}"
        if not path.exists():
            picture = photo_like(SIZES[size_name])
            if fmt == "jpeg":
                data = encode(picture, "JPEG", quality=90)
            else:
                data = encode(picture, "PNG", compress_level=6)
            path.write_bytes(data)
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
