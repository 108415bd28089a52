"""The image pipeline: uploaded bytes in, a large and a thumbnail WebP out. Pure and blocking.

No S3, no MongoDB, no event loop. :func:`process_image` is the whole pipeline; the job runs
its two steps in turn, each in a thread, so that the thumbnail is stored while the large
variant is still encoding: :func:`prepare_image` (decode, checks, resize, and the
thumbnail's WebP), then :meth:`PreparedImage.encode_large`.

Two engines, each where it is faster (bench/README.md, benchmark 1):

- Pillow (:mod:`worker.imaging_pillow`) for JPEGs that DCT scaling alone brings to the
  large side (or that need no resize), HEIC/HEIF (pillow-heif), GIF and BMP.
- libvips (:mod:`worker.imaging_vips`) for PNG, WebP, TIFF, AVIF and JPEGs that need a
  resample after any DCT scaling: it shrinks on load or streams, and resamples faster.

Whatever the engine: the format is identified and the pixel limit checked on the header,
before any decoding, so a decompression bomb costs a few hundred bytes of parsing; EXIF
orientation is applied; an embedded ICC profile (Display P3, Adobe RGB, CMYK, grey) is
converted to sRGB; the thumbnail is derived from the large output, never from the
original, and encoded first (it is what a listing shows). Outputs carry no metadata: no
EXIF, XMP or ICC profile (after the conversion they are sRGB, which browsers assume for an
untagged image), in RGB, or RGBA when the source has transparency.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError
from pillow_heif import register_heif_opener

from worker import imaging_pillow, imaging_vips
from worker.imaging_base import (
    WEBP_METHOD,
    WEBP_QUALITY,
    EncodedImage,
    ImageRejected,
    check_pixels,
    fit_size,
)
from worker.imaging_pillow import SNAP

__all__ = [
    "ALLOWED_FORMATS", "SNAP", "WEBP_METHOD", "WEBP_QUALITY", "EncodedImage",
    "ImageRejected", "PreparedImage", "ProcessedImage", "check_pixels", "encode_webp",
    "fit_size", "prepare_image", "process_image",
]

# HEIC/HEIF through libheif, as a Pillow plugin: the primary image only (no embedded
# thumbnails, depth or auxiliary images), decoded on one thread like everything else here.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False,
                     decode_threads=1)

# What an upload may be. Pillow can open much more (EPS through Ghostscript, PSD, ICNS...),
# none of which a browser shows and some of which widen the attack surface. (Phones' MPO
# files are opened by the JPEG plugin.)
ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF",
)
# Formats libvips decodes (faster, or shrinking on load); JPEG only when DCT scaling alone
# does not bring it down to the large side (see _uses_vips).
VIPS_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "AVIF"})

# The thumbnail (8x smaller than the large output) reduces more before resampling, as
# Image.thumbnail does (2048 -> 256: a 4x box reduce, then 2x), and keeps LANCZOS: at that
# size it costs little and its sharpness shows.
THUMB_RESAMPLE = Image.Resampling.LANCZOS
THUMB_REDUCING_GAP = 2.0


@dataclass(frozen=True)
class ProcessedImage:
    """The source's displayed dimensions (after EXIF orientation) and the outputs by name."""

    width: int
    height: int
    source_format: str
    outputs: dict[str, EncodedImage] = field(default_factory=dict)


class PreparedImage:
    """An upload decoded, checked and shrunk, with its thumbnail already encoded: what is
    left is :meth:`encode_large`, which the job runs while the thumbnail is being stored."""

    __slots__ = ("_large", "height", "source_format", "thumbnail", "width")

    def __init__(self, *, width: int, height: int, source_format: str,
                 thumbnail: EncodedImage, large: Image.Image | Any) -> None:
        self.width, self.height, self.source_format = width, height, source_format
        self.thumbnail = thumbnail
        # A Pillow image, or a libvips one (in memory) from the libvips engine.
        self._large: Image.Image | Any | None = large

    def encode_large(self) -> EncodedImage:
        """The large WebP. Its pixels are let go once encoded (they are not held while the
        job stores the bytes), so this can be called only once."""
        large, self._large = self._large, None
        if large is None:
            raise RuntimeError("the large variant has already been encoded")
        if isinstance(large, Image.Image):
            return encode_webp(large)
        return imaging_vips.encode(large)


def prepare_image(
    data: bytes, *, max_pixels: int, large_side: int = 2048, thumb_side: int = 256
) -> PreparedImage:
    """Decode ``data`` once, shrink it to ``large_side`` and encode the thumbnail WebP.

    Raises :class:`ImageRejected` for anything that is not a whole, supported image of at
    most ``max_pixels`` pixels: every refusal happens here, before any output exists.
    """
    if not 1 <= thumb_side <= large_side:
        raise ValueError("need 1 <= thumb_side <= large_side")
    with _open(data, max_pixels) as source:
        check_pixels(source.size, max_pixels)
        fmt = source.format or "unknown"
        if not _uses_vips(fmt, source.size, large_side):
            large, (width, height) = imaging_pillow.load_large(source, large_side)
            thumbnail = encode_webp(imaging_pillow.fit(large, thumb_side, THUMB_RESAMPLE,
                                                       THUMB_REDUCING_GAP))
            return PreparedImage(width=width, height=height, source_format=fmt,
                                 thumbnail=thumbnail, large=large)
    vips_large, (width, height) = imaging_vips.load_large(
        data, fmt, side=large_side, max_pixels=max_pixels)
    thumbnail = imaging_vips.encode(imaging_vips.shrink(vips_large, thumb_side))
    return PreparedImage(width=width, height=height, source_format=fmt,
                         thumbnail=thumbnail, large=vips_large)


def process_image(
    data: bytes, *, max_pixels: int, large_side: int = 2048, thumb_side: int = 256
) -> ProcessedImage:
    """Decode ``data`` once and encode ``large`` and ``thumbnail`` WebPs from it: the job's
    work (:func:`prepare_image`, then :meth:`PreparedImage.encode_large`) in one call.

    Raises :class:`ImageRejected` for anything that is not a whole, supported image of at
    most ``max_pixels`` pixels.
    """
    prepared = prepare_image(data, max_pixels=max_pixels, large_side=large_side,
                             thumb_side=thumb_side)
    return ProcessedImage(
        width=prepared.width,
        height=prepared.height,
        source_format=prepared.source_format,
        outputs={"large": prepared.encode_large(), "thumbnail": prepared.thumbnail},
    )


def encode_webp(image: Image.Image) -> EncodedImage:
    """Lossy WebP of an RGB/RGBA image, with no metadata."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return EncodedImage(buffer.getvalue(), image.width, image.height)


def _uses_vips(fmt: str, size: tuple[int, int], side: int) -> bool:
    """libvips for its formats, and for a JPEG that Pillow's DCT scaling would leave larger
    than ``side`` (libvips scales on load just as well, and resamples the rest faster)."""
    if fmt in ("JPEG", "MPO"):
        scale = imaging_pillow.jpeg_scale(size, side)
        return -(-max(size) // scale) > side
    return fmt in VIPS_FORMATS


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image (cannot identify format)") from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses twice its own limit (179 MP) as it reads the header; ours is lower
        # and is what the owner needs to know.
        bomb = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageRejected(
            f"image has over {bomb / 1e6:.1f} MP, over the {max_pixels / 1e6:.1f} MP limit"
        ) from exc
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        raise ImageRejected(f"not a readable image ({exc})") from exc
