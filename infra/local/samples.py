"""Sample uploads the demo and the end-to-end test generate, with what the worker must make
of them.

- ``holiday photo (1).jpg``: pixels stored landscape with EXIF Orientation 6 ("rotate 90°
  clockwise to display"), so it displays portrait with a red band on top. A worker that
  ignores EXIF produces a landscape thumbnail with the red band on the left. The name's
  space and parentheses exercise the URL-encoded key in the S3 event.
- ``logo.png``: RGBA with a transparent background around an opaque disc.
- ``IMG_0001.HEIC`` and ``photo.avif``: the holiday photo as phones save it now, HEIC
  (stored turned, with EXIF Orientation 6) and AVIF (stored upright).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

RED = (220, 30, 30)
BLUE = (30, 60, 200)
GREEN = (40, 170, 80)
DISPLAY_SIZE = (480, 720)  # portrait, as the EXIF-rotated photo displays
LOGO_SIZE = (320, 320)


@dataclass(frozen=True)
class Sample:
    filename: str
    content_type: str
    data: bytes
    display_size: tuple[int, int]  # width, height once EXIF orientation is applied


def _displayed_photo() -> object:
    from PIL import Image, ImageDraw

    width, height = DISPLAY_SIZE
    image = Image.new("RGB", DISPLAY_SIZE, BLUE)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, height // 4), fill=RED)  # the top quarter
    draw.ellipse((width // 4, height // 2, 3 * width // 4, height // 2 + width // 2), fill=GREEN)
    return image


def exif_rotated_jpeg() -> Sample:
    """Stored 720x480 with Orientation 6; displays as 480x720 with red on top."""
    from PIL import Image

    displayed = _displayed_photo()
    assert isinstance(displayed, Image.Image)
    # Orientation 6 tells viewers to turn the stored pixels 90° clockwise, so store them
    # turned 90° counter-clockwise (Pillow's ROTATE_90 is counter-clockwise).
    stored = displayed.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return Sample("holiday photo (1).jpg", "image/jpeg", out.getvalue(), DISPLAY_SIZE)


def transparent_png() -> Sample:
    """A green disc on a fully transparent background."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", LOGO_SIZE, (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((40, 40, 280, 280), fill=(*GREEN, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return Sample("logo.png", "image/png", out.getvalue(), LOGO_SIZE)


def phone_heic() -> Sample:
    """The holiday photo as an iPhone saves it: HEIC, stored turned, EXIF Orientation 6."""
    from PIL import Image
    from pillow_heif import from_pillow

    displayed = _displayed_photo()
    assert isinstance(displayed, Image.Image)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    out = io.BytesIO()
    from_pillow(displayed.transpose(Image.Transpose.ROTATE_90)).save(
        out, quality=90, exif=exif.tobytes())
    return Sample("IMG_0001.HEIC", "image/heic", out.getvalue(), DISPLAY_SIZE)


def phone_avif() -> Sample:
    """The holiday photo as AVIF, stored upright."""
    from PIL import Image

    displayed = _displayed_photo()
    assert isinstance(displayed, Image.Image)
    out = io.BytesIO()
    displayed.save(out, "AVIF", quality=90)
    return Sample("photo.avif", "image/avif", out.getvalue(), DISPLAY_SIZE)


def all_samples() -> list[Sample]:
    return [exif_rotated_jpeg(), transparent_png()]


def expected_thumbnail_size(display: tuple[int, int], side: int) -> tuple[int, int]:
    """The longest side scaled to ``side`` (never up), the other in proportion."""
    width, height = display
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass(frozen=True)
class Picture:
    """What the tests check of a derived image: size, alpha, which colour is on top."""

    size: tuple[int, int]
    format: str
    mode: str
    top: tuple[int, ...]  # RGBA at the middle of the top sixteenth
    corner: tuple[int, ...]  # RGBA at (0, 0)


def describe_picture(data: bytes) -> Picture:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        rgba = image.convert("RGBA")
        width, height = rgba.size
        top = rgba.getpixel((width // 2, height // 16))
        corner = rgba.getpixel((0, 0))
        assert isinstance(top, tuple)  # RGBA pixels are tuples
        assert isinstance(corner, tuple)
        return Picture((width, height), str(image.format), image.mode, top, corner)


def close_to(colour: tuple[int, ...], target: tuple[int, int, int], tolerance: int = 40) -> bool:
    """True when an RGB(A) pixel is within ``tolerance`` of ``target`` on every channel."""
    return len(colour) >= 3 and all(
        abs(int(a) - b) <= tolerance for a, b in zip(colour[:3], target, strict=True)
    )
