"""ICC profiles written from published colorimetry, for test and benchmark inputs.

Pillow ships only lcms' built-in sRGB/LAB/XYZ profiles, so the Display P3, Adobe RGB and
linear-grey inputs the image tests and the benchmark need are written here: ICC v2.1
matrix/TRC ("monitor") profiles whose colorants are the primaries' XYZ adapted to the
profile connection space's D50 white with the Bradford transform, as ICC.1 requires.
The same numbers give :func:`expected_srgb`, a conversion computed without lcms or libvips,
to check those libraries' output against.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
XY = tuple[float, float]

D65: XY = (0.3127, 0.3290)
D50_XYZ = (0.9642, 1.0, 0.8249)  # the ICC profile connection space's white
# Chromaticities of the red, green and blue primaries (all with a D65 white).
SRGB: tuple[XY, XY, XY] = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))  # IEC 61966-2-1
DISPLAY_P3: tuple[XY, XY, XY] = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))  # SMPTE EG 432-1
ADOBE_RGB: tuple[XY, XY, XY] = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))  # Adobe RGB (1998)
ADOBE_GAMMA = 563 / 256  # 2.19921875, as Adobe RGB (1998) specifies

_BRADFORD: Matrix = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367),
                     (0.0389, -0.0685, 1.0296))


def _mul(m: Matrix, v: Sequence[float]) -> tuple[float, float, float]:
    return (m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
            m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2])


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    cols = [_mul(a, (b[0][j], b[1][j], b[2][j])) for j in range(3)]
    return ((cols[0][0], cols[1][0], cols[2][0]), (cols[0][1], cols[1][1], cols[2][1]),
            (cols[0][2], cols[1][2], cols[2][2]))


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return (((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
            ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
            ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det))


def _xyz(xy: XY) -> tuple[float, float, float]:
    x, y = xy
    return (x / y, 1.0, (1 - x - y) / y)


def rgb_to_xyz(primaries: tuple[XY, XY, XY], white: XY = D65) -> Matrix:
    """Linear RGB -> XYZ (Y of white = 1) for these primaries and white point."""
    cols = [_xyz(p) for p in primaries]
    p: Matrix = ((cols[0][0], cols[1][0], cols[2][0]), (cols[0][1], cols[1][1], cols[2][1]),
                 (cols[0][2], cols[1][2], cols[2][2]))
    scale = _mul(_inverse(p), _xyz(white))
    return tuple(tuple(p[r][c] * scale[c] for c in range(3)) for r in range(3))  # type: ignore[return-value]


def _to_d50(white: XY) -> Matrix:
    """Bradford chromatic adaptation from ``white`` to D50."""
    src, dst = _mul(_BRADFORD, _xyz(white)), _mul(_BRADFORD, D50_XYZ)
    diag: Matrix = ((dst[0] / src[0], 0, 0), (0, dst[1] / src[1], 0), (0, 0, dst[2] / src[2]))
    return _matmul(_inverse(_BRADFORD), _matmul(diag, _BRADFORD))


def srgb_decode(v: float) -> float:
    """The sRGB transfer function, encoded (0-1) to linear (Display P3 uses it too)."""
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def srgb_encode(v: float) -> float:
    v = min(1.0, max(0.0, v))
    return v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def expected_srgb(rgb: Sequence[int], primaries: tuple[XY, XY, XY] = DISPLAY_P3,
                  gamma: float | None = None) -> tuple[float, float, float]:
    """What an 8-bit colour in a space with these primaries (and the sRGB curve, or a pure
    ``gamma``) is in sRGB, relative colorimetric with clipping, as 0-255 floats."""
    decode = srgb_decode if gamma is None else (lambda v: v**gamma)
    linear = [decode(c / 255) for c in rgb]
    xyz = _mul(rgb_to_xyz(primaries), linear)
    out = _mul(_inverse(rgb_to_xyz(SRGB)), xyz)
    return (srgb_encode(out[0]) * 255, srgb_encode(out[1]) * 255, srgb_encode(out[2]) * 255)


# --- writing the profile ---------------------------------------------------------------


def _s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15f16(v) for v in xyz)


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text
            + b"\0" * 8 + b"\0\0\0" + b"\0" * 67)


def _curve_tag(gamma: float | None) -> bytes:
    if gamma is not None:  # one entry: a pure power curve, u8Fixed8
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    table = [round(srgb_decode(i / 1023) * 65535) for i in range(1024)]
    return b"curv\0\0\0\0" + struct.pack(f">I{len(table)}H", len(table), *table)


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 display-class profile with these tags (each padded to 4 bytes)."""
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"\0\0\0\0" + b"\x02\x10\x00\x00" + b"mntr" + space
              + b"XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
              + b"".join(_s15f16(v) for v in D50_XYZ) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def rgb_profile(name: str, primaries: tuple[XY, XY, XY], gamma: float | None = None) -> bytes:
    """A matrix/TRC RGB profile: D50-adapted colorants, sRGB's curve or a pure ``gamma``."""
    m = _matmul(_to_d50(D65), rgb_to_xyz(primaries))
    curve = _curve_tag(gamma)
    return _profile(b"RGB ", [
        (b"desc", _desc_tag(name)), (b"cprt", b"text\0\0\0\0public domain\0"),
        (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag((m[0][0], m[1][0], m[2][0]))),
        (b"gXYZ", _xyz_tag((m[0][1], m[1][1], m[2][1]))),
        (b"bXYZ", _xyz_tag((m[0][2], m[1][2], m[2][2]))),
        (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
    ])


def grey_profile(name: str, gamma: float) -> bytes:
    """A grey profile with a pure power curve (``gamma`` 1.0: linear light)."""
    return _profile(b"GRAY", [
        (b"desc", _desc_tag(name)), (b"cprt", b"text\0\0\0\0public domain\0"),
        (b"wtpt", _xyz_tag(D50_XYZ)), (b"kTRC", _curve_tag(gamma)),
    ])


def display_p3() -> bytes:
    return rgb_profile("Display P3 (offload tests)", DISPLAY_P3)


def adobe_rgb() -> bytes:
    return rgb_profile("Adobe RGB (1998) (offload tests)", ADOBE_RGB, ADOBE_GAMMA)
