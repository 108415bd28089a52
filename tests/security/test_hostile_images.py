"""Hostile uploads: each file is either processed correctly or refused with a clear
permanent error, within bounded time and memory, measured in a fresh process per file
(``tests/security/image_probe.py``) so one file's memory does not hide another's.

Bounds asserted (the figures of the latest run are in docs/RELIABILITY.md): at most
``MAX_WALL_S`` seconds for the call and ``MAX_RSS_MIB`` MiB peak resident memory for the
whole process, interpreter and Pillow included, at the default settings (50 MP limit,
2048 px large side). tests/test_imaging.py checks the pixels; this checks the costs.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image

from tests.faults.figures import record
from tests.test_image_formats import header_claiming, heic
from tests.test_imaging import animated, encode, one_bit_png, quadrants, sixteen_bit_png

pytestmark = [pytest.mark.slow]

MAX_WALL_S = 10.0
MAX_RSS_MIB = 400.0


def big_exif_png() -> bytes:
    """A small PNG whose eXIf chunk is 5 MB (orientation 6 plus a 5 MB UserComment)."""
    import struct
    import zlib

    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.UserComment] = b"A" * 5_000_000
    tiff = exif.tobytes().removeprefix(b"Exif\x00\x00")
    png = encode(quadrants((400, 200)), "PNG")
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    after_header = 8 + 25  # signature, then IHDR (length, tag, 13 bytes, CRC)
    return png[:after_header] + chunk + png[after_header:]


def big_exif_webp() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.UserComment] = b"A" * 5_000_000
    return encode(quadrants((400, 200)), "WEBP", exif=exif.tobytes())


def jpeg_48mp() -> bytes:
    size = (8000, 6000)
    bands = [Image.radial_gradient("L").resize(size), Image.linear_gradient("L").resize(size),
             Image.effect_noise(size, 40)]
    return encode(Image.merge("RGB", bands), "JPEG", quality=85)


def truncated_jpeg() -> bytes:
    data = encode(quadrants((1600, 1200)), "JPEG", quality=90)
    return data[: len(data) * 2 // 3]


def heic_header_only_100000x100000() -> bytes:
    """A 64x64 HEIC whose header (its image-spatial-extents box) claims 100000x100000."""
    return header_claiming(heic(Image.new("RGB", (64, 64), (200, 30, 30))), 100_000, 100_000)


def truncated_heic() -> bytes:
    data = heic(Image.effect_noise((1600, 1200), 60).convert("RGB"))
    return data[: len(data) * 2 // 3]


# name -> (make the file, expected outcome, what the reason or result must say)
CASES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "png_12000x10000": (lambda: one_bit_png(12000, 10000), "refused",
                        "12000x10000 = 120.0 MP, over the 50.0 MP limit"),
    "png_header_only_100000x100000": (
        lambda: one_bit_png(100_000, 100_000, with_pixels=False), "refused",
        "over the 50.0 MP limit"),
    "jpeg_truncated": (truncated_jpeg, "refused", "truncated or corrupt"),
    "heic_header_only_100000x100000": (heic_header_only_100000x100000, "refused",
                                       "over the 50.0 MP limit"),
    "heic_truncated": (truncated_heic, "refused", "truncated or corrupt"),
    "text_renamed_jpg": (lambda: b"Dear diary, today I renamed this file to .jpg\n" * 50,
                         "refused", "not an image"),
    "jpeg_cmyk": (lambda: encode(Image.new("CMYK", (2000, 1500), (0, 128, 255, 0)), "JPEG"),
                  "processed", "2000x1500 JPEG"),
    "png_16bit": (lambda: sixteen_bit_png((2000, 1500)), "processed", "2000x1500 PNG"),
    "gif_animated": (lambda: animated("GIF"), "processed", "120x80 GIF"),
    "webp_animated": (lambda: animated("WEBP"), "processed", "120x80 WEBP"),
    # Orientation 6 turns 400x200 into 200x400: the huge block was read, not choked on.
    "png_exif_5mb": (big_exif_png, "processed", "200x400 PNG"),
    "webp_exif_5mb": (big_exif_webp, "processed", "200x400 WEBP"),
    "jpeg_48mp_at_the_limit": (jpeg_48mp, "processed", "8000x6000 JPEG"),
}


def probe(path: Path) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "tests.security.image_probe", str(path)],
                          capture_output=True, text=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    report["process_cpu_s"] = round(
        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)
    return report


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_image_is_processed_or_refused_within_bounds(name: str, tmp_path: Path) -> None:
    make, outcome, says = CASES[name]
    path = tmp_path / name
    path.write_bytes(make())
    report = probe(path)
    assert report["outcome"] == outcome, report
    if outcome == "refused":
        assert says in report["reason"], report
    else:
        assert report["source"] == says, report
        large, thumb = report["outputs"]["large"], report["outputs"]["thumbnail"]
        assert max(large[:2]) <= 2048 and max(thumb[:2]) <= 256 and large[2] > 0
    assert report["wall_s"] < MAX_WALL_S, report
    assert report["peak_rss_mib"] < MAX_RSS_MIB, report
    record(f"hostile image {name}", outcome=report["outcome"],
           input_bytes=report["input_bytes"], wall_s=report["wall_s"],
           peak_rss_mib=report["peak_rss_mib"], baseline_rss_mib=report["baseline_rss_mib"],
           process_cpu_s=report["process_cpu_s"])
