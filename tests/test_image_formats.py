"""Phone formats: HEIC/HEIF (pillow-heif, Pillow engine) and AVIF (libvips engine), made
here with pillow-heif's and Pillow's own encoders."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import ExifTags, Image

from tests.test_imaging import QUADRANTS, close, colour_at, decoded, quadrants, run
from worker.imaging import ImageRejected, prepare_image

MAX_PIXELS = 50_000_000


def heic(image: Image.Image, **params: object) -> bytes:
    from pillow_heif import from_pillow

    buffer = io.BytesIO()
    from_pillow(image).save(buffer, quality=90, **params)
    return buffer.getvalue()


def avif(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "AVIF", quality=90, **params)
    return buffer.getvalue()


def rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # shown turned a quarter clockwise
    return exif.tobytes()


def header_claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a HEIF) with its image-spatial-extents box rewritten to ``width`` x
    ``height``: a small file whose header promises a huge image."""
    at = data.index(b"ispe") + 8  # box type, then version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8:]


@pytest.mark.parametrize(("encode", "fmt"), [(heic, "HEIF"), (avif, "AVIF")])
def test_phone_formats_are_processed(encode: object, fmt: str) -> None:
    # GIVEN a 2400x1600 HEIC or AVIF
    assert callable(encode)
    data = encode(quadrants((2400, 1600)))
    # WHEN it is processed
    result = run(data)
    # THEN it is shrunk to the targets with its colours where they were
    assert (result.width, result.height, result.source_format) == (2400, 1600, fmt)
    large = decoded(result, "large")
    assert large.size == (2048, 1365)
    assert decoded(result, "thumbnail").size == (256, 171)
    for (fx, fy), colour in zip([(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
                                QUADRANTS, strict=True):
        assert close(colour_at(large, fx, fy), colour, tolerance=12)


@pytest.mark.parametrize(("encode", "fmt"), [(heic, "HEIF"), (avif, "AVIF")])
def test_phone_formats_follow_exif_orientation(encode: object, fmt: str) -> None:
    # GIVEN a 600x400 picture saved with EXIF orientation 6
    assert callable(encode)
    data = encode(quadrants((600, 400)), exif=rotated_exif())
    # WHEN it is processed
    result = run(data)
    image = decoded(result, "large")
    # THEN it is shown upright: 400x600, the bottom-left quadrant now at the top left
    assert (result.width, result.height, image.size) == (400, 600, (400, 600))
    assert close(colour_at(image, 0.25, 0.25), QUADRANTS[2], tolerance=12)
    assert close(colour_at(image, 0.75, 0.25), QUADRANTS[0], tolerance=12)


def test_avif_alpha_is_kept() -> None:
    # GIVEN an AVIF with a transparent half
    image = quadrants((400, 200), "RGBA")
    image.paste((0, 0, 0, 0), (200, 0, 400, 200))
    # WHEN / THEN the large output keeps the alpha channel
    large = decoded(run(avif(image)), "large")
    assert large.mode == "RGBA"
    assert large.getchannel("A").getpixel((300, 100)) == 0
    assert large.getchannel("A").getpixel((100, 100)) == 255


def test_heic_pixel_limit_is_checked_on_the_header() -> None:
    # GIVEN a 600x400 HEIC and a limit below that
    data = heic(quadrants((600, 400)))
    # WHEN / THEN it is refused from the header, with its size
    with pytest.raises(ImageRejected, match=r"600x400 = 0.2 MP, over the 0.1 MP limit"):
        prepare_image(data, max_pixels=100_000)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("width", "height", "reason"), [
    (100_000, 100_000, r"over 17\d\.\d MP, over the 50\.0 MP limit"),
    (10_000, 8_000, r"10000x8000 = 80\.0 MP, over the 50\.0 MP limit"),
])
def test_heic_header_bomb_is_refused_before_decoding(width: int, height: int,
                                                     reason: str) -> None:
    # GIVEN a 660-byte HEIC whose header claims a huge image
    data = header_claiming(heic(Image.new("RGB", (64, 64), (200, 30, 30))), width, height)
    # WHEN / THEN the pixel limit refuses it (nothing is decoded: there is nothing to decode)
    with pytest.raises(ImageRejected, match=reason):
        prepare_image(data, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("encode", [heic, avif], ids=["heic", "avif"])
@pytest.mark.parametrize("keep", [1 / 2, 9 / 10])
def test_truncated_phone_formats_are_refused(encode: object, keep: float) -> None:
    # GIVEN a noisy picture's HEIC or AVIF, cut short
    assert callable(encode)
    data = encode(Image.effect_noise((1200, 900), 60).convert("RGB"))
    # WHEN / THEN it is refused as unreadable, never half-decoded
    with pytest.raises(ImageRejected, match=r"truncated or corrupt|not (an|a readable) image"):
        prepare_image(data[: int(len(data) * keep)], max_pixels=MAX_PIXELS)
