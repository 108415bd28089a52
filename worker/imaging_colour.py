"""Colour management for the Pillow engine: pixels with an embedded ICC profile (Display
P3, Adobe RGB, CMYK, grey) are converted to sRGB with lcms (Pillow's ``ImageCms``).

The outputs carry no profile: after this conversion they are sRGB, which is what browsers
assume for an untagged image. Intent: relative colorimetric (libvips' default too), so
in-gamut colours are exact and out-of-gamut ones are clipped. A profile lcms cannot read,
or one that does not match the pixels (an RGB profile on a grey image), is ignored: the
pixels are taken as sRGB, as they were before colour management.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

from PIL import Image, ImageCms

# lcms pixel layouts Pillow can transform from, by the profile's colour space.
_INPUT_MODES = {"RGB ": ("RGB", "RGBA"), "GRAY": ("L", "LA"), "CMYK": ("CMYK",)}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Profiles seen in a worker's lifetime are few (a phone model's, Adobe RGB...): their
# transforms are kept, by the profile's digest.
_CACHED_TRANSFORMS = 32
_TRANSFORMS: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = OrderedDict()
_LOCK = threading.Lock()


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """``image`` (RGB, RGBA, L, LA or CMYK) in sRGB: RGB, or RGBA when it has alpha.

    Without a usable profile, CMYK is converted naively and the others are returned as
    they are (taken to be sRGB already).
    """
    transform = _transform(icc_profile, image.mode) if icc_profile else None
    if transform is None:
        return image.convert("RGB") if image.mode == "CMYK" else image
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    colour = image.convert({"RGBA": "RGB", "LA": "L"}.get(image.mode, image.mode))
    out = transform.apply(colour)
    if alpha is not None:
        out.putalpha(alpha)
    return out


def _transform(icc_profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The cached transform for this profile and pixel layout (None: not usable). Keyed by
    the profile's digest, so the cache never holds profiles' bytes."""
    colour_mode = {"RGBA": "RGB", "LA": "L"}.get(mode, mode)
    key = (hashlib.blake2b(icc_profile, digest_size=16).digest(), colour_mode)
    with _LOCK:
        if key in _TRANSFORMS:
            _TRANSFORMS.move_to_end(key)
            return _TRANSFORMS[key]
    transform = _build(icc_profile, colour_mode)
    with _LOCK:
        _TRANSFORMS[key] = transform
        while len(_TRANSFORMS) > _CACHED_TRANSFORMS:
            _TRANSFORMS.popitem(last=False)
    return transform


def _build(icc_profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        space = source.profile.xcolor_space
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None
    if mode not in _INPUT_MODES.get(space, ()):
        return None
    try:
        return ImageCms.buildTransform(
            source, _SRGB, mode, "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            # lcms' one-pixel cache is not thread-safe; jobs share transforms across threads.
            flags=ImageCms.Flags.NOCACHE,
        )
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None
