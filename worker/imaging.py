"""The image pipeline: uploaded bytes in, a large and a thumbnail WebP out. Pure and blocking.

No S3, no MongoDB, no event loop. :func:`process_image` is the whole pipeline; the job runs
its two steps in turn, each in a thread, so that the thumbnail is stored while the large
variant is still encoding: :func:`prepare_image` (decode, checks, resize, and the
thumbnail's WebP), then :meth:`PreparedImage.encode_large`.

Why it is fast (a 12 MP JPEG is decoded at a quarter of its pixels, not all of them):

- The pixel limit is checked on the header, before any decoding, so a decompression bomb
  costs a few hundred bytes of parsing.
- JPEGs are decoded once, scaled in the DCT domain (``draft``: 1/2, 1/4, 1/8) to the
  smallest scale that is still at least the large target; a scale that lands just under the
  target (within ``SNAP``) is used as is, which saves both the full decode and the resample.
- What is left to shrink is resampled to exactly the target with BICUBIC (``RESAMPLE``),
  after an integer box ``reduce`` when shrinking by 3x or more (``REDUCING_GAP``).
- The thumbnail is derived from the large output, never from the original, with LANCZOS,
  and encoded first: it is what a listing shows, and it takes a few ms.
- EXIF orientation is applied last, to the small image.
- WebP is written with a cheaper ``method`` than Pillow's default (see ``WEBP_METHOD``).

Outputs carry no metadata: no EXIF, XMP or ICC profile is written, and colours are converted
to plain RGB (RGBA when the source has transparency).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from PIL import ExifTags, Image, UnidentifiedImageError

from shared.errors import PermanentJobError

# What an upload may be. Pillow can open much more (EPS through Ghostscript, PSD, ICNS...),
# none of which a browser shows and some of which widen the attack surface. (Phones' MPO
# files are opened by the JPEG plugin.)
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")

WEBP_QUALITY = 80
# libwebp's effort 0-6 (Pillow's default is 4): the fastest whose output stays within 10 %
# of the default's size (measurements: bench/README.md, "Worker constants").
WEBP_METHOD = 2
# A DCT scale whose long side lands at or above this fraction of the target is used as is
# (e.g. 4000x3000 -> 2000x1500 for a 2048 target) instead of decoding at the next larger
# scale and resampling down.
SNAP = 0.9
# Integer box reduction first, then RESAMPLE over the last factor of at most this much:
# Pillow's measure of "indistinguishable from resampling alone" is 3.0.
REDUCING_GAP = 3.0
# The filter for the large output's last step (at most 2x after DCT scaling, at most
# REDUCING_GAP otherwise): nearly LANCZOS's quality for less CPU; HAMMING visibly loses
# fine detail (bench/README.md, "Worker constants").
RESAMPLE = Image.Resampling.BICUBIC
# The thumbnail (8x smaller than the large output) reduces more before resampling, as
# Image.thumbnail does (2048 -> 256: a 4x box reduce, then 2x), and keeps LANCZOS: at that
# size it costs little and its sharpness shows.
THUMB_RESAMPLE = Image.Resampling.LANCZOS
THUMB_REDUCING_GAP = 2.0

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
# What a corrupt or cut-off file makes Pillow's decoders raise.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error)


class ImageRejected(PermanentJobError):
    """The upload is not an image this pipeline can process; ``str()`` says why."""


@dataclass(frozen=True)
class EncodedImage:
    """One output: WebP bytes and their dimensions."""

    data: bytes
    width: int
    height: int
    content_type: str = "image/webp"


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
                 thumbnail: EncodedImage, large: Image.Image) -> None:
        self.width, self.height, self.source_format = width, height, source_format
        self.thumbnail = thumbnail
        self._large: Image.Image | None = large

    def encode_large(self) -> EncodedImage:
        """The large WebP. Its pixels are let go once encoded (they are not held while the
        job stores the bytes), so this can be called only once."""
        large, self._large = self._large, None
        if large is None:
            raise RuntimeError("the large variant has already been encoded")
        return encode_webp(large)


def prepare_image(
    data: bytes, *, max_pixels: int, large_side: int = 2048, thumb_side: int = 256
) -> PreparedImage:
    """Decode ``data`` once, shrink it to ``large_side`` and encode the thumbnail WebP.

    Raises :class:`ImageRejected` for anything that is not a whole, supported image of at
    most ``max_pixels`` pixels: every refusal happens here, before any output exists.
    """
    if not 1 <= thumb_side <= large_side:
        raise ValueError("need 1 <= thumb_side <= large_side")
    large, (width, height), fmt = _load_large(data, max_pixels=max_pixels, side=large_side)
    thumbnail = encode_webp(_fit(large, thumb_side, THUMB_RESAMPLE, THUMB_REDUCING_GAP))
    return PreparedImage(width=width, height=height, source_format=fmt,
                         thumbnail=thumbnail, large=large)


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


def encode_webp(image: Image.Image) -> EncodedImage:
    """Lossy WebP of an RGB/RGBA image, with no metadata."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return EncodedImage(buffer.getvalue(), image.width, image.height)


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
    except (OSError, ValueError, EOFError) as exc:
        raise ImageRejected(f"not a readable image ({exc})") from exc


def _load_large(
    data: bytes, *, max_pixels: int, side: int
) -> tuple[Image.Image, tuple[int, int], str]:
    """The first frame, upright, in RGB(A), shrunk to ``side``; with the upright size of
    the source and its format. The full-size decode is freed on return, before encoding."""
    with _open(data, max_pixels) as source:
        check_pixels(source.size, max_pixels)
        size, fmt = source.size, source.format or "unknown"
        # Read before decoding: when no conversion or resize is needed, the output below
        # is the source object itself, and stripping its metadata would drop the EXIF
        # (PNG and WebP keep it in ``info``).
        transpose = _orientation(source)
        if fmt in ("JPEG", "MPO"):
            _draft(source, side)
        large = _as_output_mode(_fit(_decode(source), side))
    if transpose is not None:
        large = large.transpose(transpose)
        if transpose in _SWAPS_SIDES:
            size = (size[1], size[0])
    return large, size, fmt


def _draft(source: Image.Image, target: int) -> None:
    """Pick the JPEG decoder's DCT scale (1, 2, 4 or 8) for a long side of ``target``: the
    largest that keeps the long side at least ``SNAP * target``."""
    width, height = source.size
    scale = 1
    for candidate in (2, 4, 8):
        if -(-max(width, height) // candidate) >= SNAP * target:
            scale = candidate
    if scale > 1:
        # draft() picks the largest scale s with size // requested >= s.
        source.draft("RGB", (max(1, width // scale), max(1, height // scale)))


def _decode(source: Image.Image) -> Image.Image:
    """Decode the first frame; truncated or corrupt data is refused, never half-loaded."""
    try:
        source.seek(0)
        source.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image frame is too large ({exc})") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"image is truncated or corrupt ({exc})") from exc
    return _to_working_mode(source)


def _to_working_mode(image: Image.Image) -> Image.Image:
    """RGB, RGBA, L or LA: modes the resamplers handle (no palette, no 16 bits)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
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
    if mode in ("P", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise ImageRejected(f"unsupported pixel mode {mode}")


def _fit(image: Image.Image, side: int, resample: Image.Resampling = RESAMPLE,
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
