"""Output quality: PSNR of an output against a full-quality reference of the same size."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageChops, ImageStat


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over the RGB channels (``inf`` when identical).

    Both images must have the same size; both are compared as 8-bit RGB.
    """
    if image.size != reference.size:
        raise ValueError(f"sizes differ: {image.size} vs {reference.size}")
    diff = ImageChops.difference(image.convert("RGB"), reference.convert("RGB"))
    squares = ImageStat.Stat(diff).sum2  # per band: sum of squared differences
    mse = sum(squares) / (3 * image.width * image.height)
    if mse == 0:
        return math.inf
    return 10 * math.log10(255**2 / mse)


def reference_for(source: bytes, size: tuple[int, int]) -> Image.Image:
    """The best this library can make of ``source`` at ``size``: a full decode, then one
    LANCZOS resample straight to ``size``, never lossy-encoded."""
    with Image.open(io.BytesIO(source)) as image:
        full = image.convert("RGB")
    if full.size == size:
        return full
    return full.resize(size, Image.Resampling.LANCZOS)


def psnr_of_webp(webp: bytes, source: bytes) -> float:
    """PSNR of an encoded output against the reference at the output's own size."""
    with Image.open(io.BytesIO(webp)) as out:
        decoded = out.convert("RGB")
    return psnr(decoded, reference_for(source, decoded.size))
