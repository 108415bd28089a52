"""Output quality: PSNR and SSIM of an output against a full-quality reference of the same
size.

The reference is the best this bench can make of the source at the output's size: a full
decode (HEIC through pillow-heif), its ICC profile converted to sRGB with lcms (relative
colorimetric, as the product does), one LANCZOS resample straight to the output's size,
never lossy-encoded. Images with alpha are compared composited over mid grey, so colour
hidden under full transparency (which encoders may change freely) does not count.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageChops, ImageCms, ImageStat

_GREY = (128, 128, 128, 255)


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


def ssim(image: Image.Image, reference: Image.Image) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) of the
    luma (BT.601) of two same-size images, computed in floats with libvips."""
    import pyvips  # type: ignore[import-untyped]

    if image.size != reference.size:
        raise ValueError(f"sizes differ: {image.size} vs {reference.size}")

    def luma(picture: Image.Image) -> object:
        rgb = picture.convert("RGB")
        vips_image = pyvips.Image.new_from_memory(rgb.tobytes(), rgb.width, rgb.height, 3,
                                                  "uchar")
        return vips_image.recomb([[0.299, 0.587, 0.114]]).cast("float")

    x, y = luma(image), luma(reference)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: object) -> object:
        return v.gaussblur(1.5, precision="float")  # type: ignore[attr-defined]

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x  # type: ignore[operator]
    var_y = blur(y * y) - mu_y * mu_y  # type: ignore[operator]
    cov = blur(x * y) - mu_x * mu_y  # type: ignore[operator]
    top = (mu_x * mu_y * 2 + c1) * (cov * 2 + c2)  # type: ignore[operator]
    bottom = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)  # type: ignore[operator]
    return float((top / bottom).avg())


def _decoded(data: bytes) -> Image.Image:
    """The first frame in sRGB, RGB or RGBA, with its ICC profile applied."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        profile = image.info.get("icc_profile")
        mode = "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        if not profile:
            return image.convert(mode)
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        colour = image if image.mode in ("RGB", "CMYK", "L") else image.convert("RGB")
        converted = ImageCms.profileToProfile(
            colour, source, ImageCms.createProfile("sRGB"), outputMode="RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
        assert converted is not None
        if mode == "RGBA":
            converted.putalpha(image.getchannel("A"))
        return converted


def reference_for(source: bytes, size: tuple[int, int]) -> Image.Image:
    """The best this library can make of ``source`` at ``size`` (see the module's doc)."""
    full = _decoded(source)
    return full if full.size == size else full.resize(size, Image.Resampling.LANCZOS)


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image.convert("RGB")
    return Image.alpha_composite(Image.new("RGBA", image.size, _GREY), image).convert("RGB")


def scores_of_webp(webp: bytes, source: bytes) -> tuple[float, float]:
    """PSNR (dB) and SSIM of an encoded output against the reference at its own size."""
    with Image.open(io.BytesIO(webp)) as out:
        out.load()
        decoded = out.convert("RGBA") if "A" in out.getbands() else out.convert("RGB")
    reference = reference_for(source, decoded.size)
    if decoded.mode != reference.mode:  # one side has alpha: compare both composited
        decoded, reference = decoded.convert("RGBA"), reference.convert("RGBA")
    flat, flat_reference = _flatten(decoded), _flatten(reference)
    return psnr(flat, flat_reference), ssim(flat, flat_reference)


def psnr_of_webp(webp: bytes, source: bytes) -> float:
    """PSNR of an encoded output against the reference at the output's own size."""
    return scores_of_webp(webp, source)[0]
