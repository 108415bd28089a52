"""Colour management: uploads with an embedded ICC profile come out in sRGB.

The profiles are written by ``bench/icc.py`` from the published primaries (Display P3,
Adobe RGB (1998)) and a pure-gamma grey; the expected sRGB values are computed there
from the same primaries with plain matrix arithmetic, not with lcms or libvips. The CMYK
profile is libvips' built-in one, taken from pyvips, and the CMYK reference is lcms'
conversion of the full-size decode (an honest reference: a different library from the
libvips engine's, and for the Pillow engine the same library at another point of the
pipeline, before rather than after the resample). Both engines are covered: small JPEGs
go through Pillow, PNGs and JPEGs too small for DCT scaling through libvips.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from PIL import Image, ImageCms, ImageDraw

from bench import icc
from worker.imaging import process_image

MAX_PIXELS = 50_000_000
# Flat patches through a lossy WebP (and a JPEG source): a few levels of error.
TOLERANCE = 4
# Saturated, mid and out-of-sRGB-gamut colours; pure P3 red is outside sRGB, so relative
# colorimetric clips it to sRGB red, and (128, 0, 0) shows the conversion happened.
P3_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (128, 0, 0), (200, 100, 50), (60, 160, 90),
)


def patches(colours: Sequence[Sequence[int]], size: tuple[int, int], mode: str = "RGB"
            ) -> Image.Image:
    """Vertical stripes, one per colour, wide enough for their centres to be flat."""
    image = Image.new(mode, size)
    draw = ImageDraw.Draw(image)
    width = size[0] // len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle((i * width, 0, (i + 1) * width - 1, size[1]), fill=tuple(colour))
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def centres(data: bytes, count: int) -> list[tuple[int, int, int]]:
    """The colour at the centre of each of ``count`` stripes of a processed upload."""
    result = process_image(data, max_pixels=MAX_PIXELS)
    with Image.open(io.BytesIO(result.outputs["large"].data)) as out:
        large = out.convert("RGB")
    assert not out.info.get("icc_profile"), "outputs are untagged sRGB"
    found = []
    for i in range(count):
        pixel = large.getpixel((int((i + 0.5) * large.width / count), large.height // 2))
        assert isinstance(pixel, tuple)
        found.append((pixel[0], pixel[1], pixel[2]))
    return found


def assert_close(found: Sequence[Sequence[float]], expected: Sequence[Sequence[float]],
                 tolerance: float = TOLERANCE) -> None:
    for got, want in zip(found, expected, strict=True):
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= tolerance, (
            f"{got} is not {tuple(round(w, 1) for w in want)}: {list(found)}")


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("JPEG", (1200, 400)), ("JPEG", (2600, 600)), ("PNG", (1200, 400))],
    ids=["jpeg-pillow-engine", "jpeg-libvips-engine", "png-libvips-engine"],
)
def test_display_p3_is_converted_to_srgb(fmt: str, size: tuple[int, int]) -> None:
    # GIVEN an image tagged Display P3, as an iPhone saves them
    params = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    data = encode(patches(P3_COLOURS, size), fmt, icc_profile=icc.display_p3(), **params)
    # WHEN it is processed
    found = centres(data, len(P3_COLOURS))
    # THEN each colour is what the primaries' arithmetic says it is in sRGB
    assert_close(found, [icc.expected_srgb(c) for c in P3_COLOURS])
    # ... which is not what the untouched values would be (the test can tell)
    assert abs(found[1][0] - 128) > 8 and found[3][0] < 10


def test_adobe_rgb_is_converted_to_srgb() -> None:
    # GIVEN an Adobe RGB (1998) PNG (gamma 2.2, wider greens)
    colours = ((200, 100, 50), (60, 160, 90), (128, 128, 128))
    data = encode(patches(colours, (900, 300)), "PNG", icc_profile=icc.adobe_rgb())
    # WHEN / THEN its colours come out in sRGB
    expected = [icc.expected_srgb(c, icc.ADOBE_RGB, icc.ADOBE_GAMMA) for c in colours]
    assert_close(centres(data, len(colours)), expected)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_grey_profile_is_applied(fmt: str) -> None:
    # GIVEN a greyscale image whose profile says its values are linear light
    greys = (32, 128, 220)
    data = encode(patches([(g,) for g in greys], (900, 300), "L"), fmt,
                  icc_profile=icc.grey_profile("linear grey", 1.0))
    # WHEN / THEN each grey is re-encoded with sRGB's curve, as RGB
    expected = [(icc.srgb_encode(g / 255) * 255,) * 3 for g in greys]
    assert_close(centres(data, len(greys)), expected)


def test_sixteen_bit_p3_png_is_converted_to_srgb() -> None:
    import pyvips  # type: ignore[import-untyped]

    # GIVEN a 16-bit RGB PNG tagged Display P3 (Pillow cannot write one; libvips can)
    colours = P3_COLOURS
    blank = pyvips.Image.black(200, 300, bands=3).cast("ushort")
    stripes = [blank.new_from_image([c * 257 for c in colour])
               for colour in colours]
    image = pyvips.Image.arrayjoin(stripes, across=len(stripes))
    image = image.copy(interpretation="rgb16")
    image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc.display_p3())
    data = image.pngsave_buffer()
    assert data[24:26] == bytes([16, 2]), "IHDR: 16 bits a sample, RGB"
    # WHEN / THEN it comes out as 8-bit sRGB, converted like the 8-bit one
    assert_close(centres(data, len(colours)), [icc.expected_srgb(c) for c in colours])


def _cmyk_profile() -> bytes:
    import pyvips

    srgb = pyvips.Image.black(1, 1, bands=3).copy(interpretation="srgb")
    profile: bytes = srgb.icc_transform("cmyk").get("icc-profile-data")
    return profile


@pytest.mark.parametrize("size", [(1200, 400), (2600, 600)],
                         ids=["pillow-engine", "libvips-engine"])
def test_cmyk_jpeg_with_a_profile_matches_a_reference_conversion(size: tuple[int, int]
                                                                  ) -> None:
    # GIVEN a CMYK JPEG carrying its profile (libvips' built-in CMYK profile)
    profile = _cmyk_profile()
    inks = ((0, 255, 255, 0), (255, 0, 0, 0), (40, 60, 120, 20), (0, 0, 0, 200))
    data = encode(patches(inks, size, "CMYK"), "JPEG", quality=95, icc_profile=profile)
    # ... and lcms' conversion of its full-size decode, stripe by stripe
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    reference_image = ImageCms.profileToProfile(
        decoded, ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    assert reference_image is not None
    reference = [reference_image.getpixel((int((i + 0.5) * size[0] / len(inks)), size[1] // 2))
                 for i in range(len(inks))]
    naive = decoded.convert("RGB").getpixel((size[0] // len(inks) // 2, size[1] // 2))
    assert isinstance(naive, tuple) and isinstance(reference[0], tuple)
    assert max(abs(a - b) for a, b in zip(naive, reference[0], strict=True)) > 20
    # WHEN it is processed
    found = centres(data, len(inks))
    # THEN its colours are the reference's (not the naive CMYK -> RGB formula's)
    assert_close(found, [p for p in reference if isinstance(p, tuple)], tolerance=6)


def test_a_broken_profile_is_ignored_not_fatal() -> None:
    # GIVEN a JPEG whose "ICC profile" is garbage
    data = encode(patches([(200, 100, 50)], (400, 200)), "JPEG", quality=95,
                  icc_profile=b"not a profile" * 10)
    # WHEN / THEN it is processed, its pixels taken as sRGB
    assert_close(centres(data, 1), [(200, 100, 50)])
