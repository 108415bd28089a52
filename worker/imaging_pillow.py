"""The Pillow engine: JPEG (scaled while decoding), HEIC/HEIF (libheif through pillow-heif),
GIF and BMP, decoded into a Pillow image no larger than the large output.

- JPEGs are decoded once, scaled in the DCT domain (``draft``: 1/2, 1/4, 1/8) to the
  smallest scale that is still at least the large target; a scale that lands just under the
  target (within ``SNAP``) is used as is, which saves both the full decode and the resample.
- What is left to shrink is resampled to exactly the target with BICUBIC (``RESAMPLE``),
  after an integer box ``reduce`` when shrinking by 3x or more (``REDUCING_GAP``).
- An embedded ICC profile is applied after the resample (:mod:`worker.imaging_colour`), to
  the fewest pixels, as libvips' ``thumbnail`` does.
- EXIF orientation is applied last, to the small image.
"""

from __future__ import annotations

from PIL import ExifTags, Image

from worker.imaging_base import DECODE_ERRORS, ImageRejected, fit_size
from worker.imaging_colour import to_srgb

# A DCT scale whose long side lands at or above this fraction of the target is used as is
# (e.g. 4000x3000 -> 2000x1500 for a 2048 target) instead of decoding at the next larger
# scale and resampling down.
SNAP = 0.9
# Integer box reduction first, then RESAMPLE over the last factor of at most this much:
# Pillow's measure of "indistinguishable from resampling alone" is 3.0.
REDUCING_GAP = 3.0
# The filter for the large output's last step (at most 2x after DCT scaling, at most
# REDUCING_GAP otherwise): BICUBIC costs two thirds of LANCZOS for 0.1 dB less PSNR;
# HAMMING loses over 0.5 dB on fine detail (bench/README.md).
RESAMPLE = Image.Resampling.BICUBIC

_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({
    Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270,
})
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def jpeg_scale(size: tuple[int, int], target: int) -> int:
    """The JPEG decoder's DCT scale (1, 2, 4 or 8) for a long side of ``target``: the
    largest that keeps the long side at least ``SNAP * target``."""
    scale = 1
    for candidate in (2, 4, 8):
        if -(-max(size) // candidate) >= SNAP * target:
            scale = candidate
    return scale


def load_large(source: Image.Image, side: int) -> tuple[Image.Image, tuple[int, int]]:
    """The opened ``source``'s first frame, upright, in sRGB (RGB or RGBA), shrunk to
    ``side``; with the upright size of the source. The caller has checked its pixels."""
    size = source.size
    # Read before decoding: when no conversion or resize is needed, the output below
    # is the source object itself, and stripping its metadata would drop the EXIF
    # (PNG and WebP keep it in ``info``).
    transpose = _orientation(source)
    icc_profile = source.info.get("icc_profile")
    if source.format in ("JPEG", "MPO"):
        scale = jpeg_scale(size, side)
        if scale > 1:
            # draft() picks the largest scale s with size // requested >= s.
            source.draft("RGB", (max(1, size[0] // scale), max(1, size[1] // scale)))
    working = fit(_decode(source), side)
    large = _as_output_mode(to_srgb(working, icc_profile if isinstance(icc_profile, bytes)
                                    else None))
    if transpose is not None:
        large = large.transpose(transpose)
        if transpose in _SWAPS_SIDES:
            size = (size[1], size[0])
    return large, size


def _decode(source: Image.Image) -> Image.Image:
    """Decode the first frame; truncated or corrupt data is refused, never half-loaded."""
    try:
        source.seek(0)
        source.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image frame is too large ({exc})") from exc
    except DECODE_ERRORS as exc:
        raise ImageRejected(f"image is truncated or corrupt ({str(exc).strip()})") from exc
    return _to_working_mode(source)


def _to_working_mode(image: Image.Image) -> Image.Image:
    """RGB, RGBA, L, LA or CMYK: modes the resamplers and lcms handle (no palette, no 16
    bits)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA", "CMYK"):
        if image.has_transparency_data and mode in ("RGB", "L"):
            return image.convert("RGBA")
        return image
    if mode in _SIXTEEN_BIT:
        # Pillow's I;16 -> L conversion clips at 255 (a mostly white image): scale instead.
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode in ("RGBa", "PA") or (mode in ("P", "1") and image.has_transparency_data):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "RGBX", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise ImageRejected(f"unsupported pixel mode {mode}")


def fit(image: Image.Image, side: int, resample: Image.Resampling = RESAMPLE,
        reducing_gap: float = REDUCING_GAP) -> Image.Image:
    """Shrink to a long side of at most ``side``; smaller images are kept as they are."""
    if max(image.size) <= side:
        return image
    return image.resize(fit_size(image.size, side), resample, reducing_gap=reducing_gap)



def _as_output_mode(image: Image.Image) -> Image.Image:
    """RGB or RGBA, with nothing of the source's metadata attached."""
    mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
    out = image if image.mode == mode else image.convert(mode)
    out.info = {}
    return out


def _orientation(source: Image.Image) -> Image.Transpose | None:
    try:
        value = source.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block only means no known orientation
        return None
    return _TRANSPOSE.get(value) if isinstance(value, int) else None
