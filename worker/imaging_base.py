"""What both image engines share: the refusal, an encoded output, the size rules and the
WebP settings. :mod:`worker.imaging` is the public face; this module has no engine in it."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.errors import PermanentJobError

WEBP_QUALITY = 80
# libwebp's effort 0-6 (Pillow's "method", libvips' "effort"; the default is 4). On a
# 2000x1500 photo-like image at quality 80, 2 is the fastest within 10 % of 4's size
# (bench/README.md has the figures).
WEBP_METHOD = 2

# What a corrupt or cut-off file makes Pillow's decoders raise.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


class ImageRejected(PermanentJobError):
    """The upload is not an image this pipeline can process; ``str()`` says why."""


@dataclass(frozen=True)
class EncodedImage:
    """One output: WebP bytes and their dimensions."""

    data: bytes
    width: int
    height: int
    content_type: str = "image/webp"


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image larger than ``max_pixels`` (before anything is decoded)."""
    width, height = size
    if width < 1 or height < 1:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, "
            f"over the {max_pixels / 1e6:.1f} MP limit"
        )


def fit_size(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so that its long side is at most ``side`` (never enlarged)."""
    width, height = size
    long_side = max(width, height)
    if long_side <= side:
        return size
    scale = side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))
