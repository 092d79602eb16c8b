"""Decoding (bytes → bounded RGB image) and preprocessing (image → normalized tensor).

Every image here is real: encoded by Pillow from arrays made in the test, or one of
scikit-image's bundled photos, and decoded by real Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from servoscope.errors import (
    EmptyBody,
    ImageTooLarge,
    InvalidImage,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from servoscope.models.repository import find
from servoscope.pipeline.decode import DecodeLimits, decode, media_format, to_rgb
from servoscope.pipeline.postprocess import Postprocessor
from servoscope.pipeline.preprocess import PreprocessSpec, crop_box, prepare, resize_crop
from servoscope.pipeline.runtime import OnnxModel

LIMITS = DecodeLimits()
SPEC = PreprocessSpec(size=224, resize=256, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))
TORCHVISION_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
TORCHVISION_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pixels(data: bytes, min_side: int = 256) -> np.ndarray:
    decoded = decode(data, LIMITS, min_side)
    assert decoded.image.mode in ("RGB", "L")
    return np.asarray(to_rgb(decoded.image))


# --- modes → RGB -----------------------------------------------------------------------------


def test_grayscale_l() -> None:
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L")
    rgb = pixels(encode(image, "PNG"))
    assert rgb.shape == (8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], np.asarray(image))


def test_grayscale_with_alpha_la_composites_on_white() -> None:
    image = Image.new("LA", (8, 8), (40, 255))
    image.paste((40, 0), (0, 0, 4, 8))  # left half fully transparent
    rgb = pixels(encode(image, "PNG"))
    np.testing.assert_array_equal(rgb[:, :4], 255)
    np.testing.assert_array_equal(rgb[:, 4:], 40)


def test_palette_p() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 30, 60] + [0] * (254 * 3))
    rgb = pixels(encode(image, "PNG"))
    np.testing.assert_array_equal(rgb, np.broadcast_to([200, 30, 60], (8, 8, 3)))


def test_palette_with_transparency_composites_on_white() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 30, 60] + [0] * (254 * 3))
    image.paste(0, (0, 0, 8, 4))  # top half: index 0, transparent
    data = encode(image, "PNG", transparency=0)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    rgb = pixels(data)
    np.testing.assert_array_equal(rgb[:4], 255)
    np.testing.assert_array_equal(rgb[4:], np.broadcast_to([200, 30, 60], (4, 8, 3)))


def test_rgba_composites_on_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:, :4, 3] = 0  # transparent
    rgba[:, 4:, 3] = 255  # opaque
    rgb = pixels(encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    np.testing.assert_array_equal(rgb[:, :4], 255)
    np.testing.assert_array_equal(rgb[:, 4:], np.broadcast_to([0, 0, 255], (8, 4, 3)))


def test_cmyk_jpeg() -> None:
    image = Image.new("CMYK", (64, 64), (0, 0, 0, 0))  # white
    image.paste((255, 0, 0, 0), (0, 0, 32, 64))  # left half cyan
    data = encode(image, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    rgb = pixels(data).astype(int)
    np.testing.assert_allclose(rgb[32, 8], [0, 255, 255], atol=8)
    np.testing.assert_allclose(rgb[32, 56], [255, 255, 255], atol=8)


def test_sixteen_bit_png_keeps_its_brightness() -> None:
    values = np.full((8, 8), 0x8000, dtype=np.uint16)
    values[0, 0] = 0xFFFF
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = pixels(data)
    np.testing.assert_array_equal(rgb[1:, 1:], 128)  # the high byte: no per-image stretching
    np.testing.assert_array_equal(rgb[0, 0], 255)


def test_uniform_sixteen_bit_png_is_not_blacked_out() -> None:
    data = encode(Image.fromarray(np.full((8, 8), 0xC000, dtype=np.uint16)), "PNG")
    np.testing.assert_array_equal(pixels(data), 0xC0)


def test_one_bit() -> None:
    bits = np.zeros((8, 8), dtype=bool)
    bits[:, 4:] = True
    rgb = pixels(encode(Image.fromarray(bits), "PNG"))
    np.testing.assert_array_equal(rgb[:, :4], 0)
    np.testing.assert_array_equal(rgb[:, 4:], 255)


# --- EXIF orientation ------------------------------------------------------------------------

# Where the source's top-left corner lands once orientation n is applied (EXIF 2.3, tag 0x0112).
TOP_LEFT_LANDS = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def marked_image(width: int, height: int) -> Image.Image:
    """Gray, with a red square in the top-left corner: no symmetry maps it onto itself."""
    array = np.full((height, width, 3), 128, dtype=np.uint8)
    side = min(width, height) // 2
    array[:side, :side] = (255, 0, 0)
    return Image.fromarray(array)


def with_orientation(image: Image.Image, orientation: int, **options: Any) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, **options)


def red_corner(rgb: np.ndarray) -> str:
    h, w = rgb.shape[:2]
    m = min(h, w) // 8
    corners = {"tl": rgb[m, m], "tr": rgb[m, w - 1 - m], "bl": rgb[h - 1 - m, m], "br": rgb[h - 1 - m, w - 1 - m]}
    red = [name for name, (r, g, b) in corners.items() if r > 200 and g < 60 and b < 60]
    assert len(red) == 1, corners
    return red[0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured(orientation: int) -> None:
    data = with_orientation(marked_image(48, 32), orientation, quality=95)
    rgb = pixels(data)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    np.testing.assert_array_equal(rgb, np.asarray(upright))
    assert rgb.shape[:2] == ((32, 48) if orientation <= 4 else (48, 32))
    assert red_corner(rgb) == TOP_LEFT_LANDS[orientation]


# --- large JPEGs: DCT-domain downscaling -----------------------------------------------------


@pytest.fixture(scope="module")
def phone_photo() -> bytes:
    """A 4032×3024 JPEG, the size of a phone camera's photo, built from a real photo."""
    image = Image.fromarray(skimage.data.coffee()).resize((4032, 3024), Image.Resampling.BILINEAR)
    return encode(image, "JPEG", quality=85)


@pytest.mark.parametrize("min_side", [224, 256, 300, 400])
def test_large_jpeg_decodes_reduced_but_not_below_min_side(phone_photo: bytes, min_side: int) -> None:
    decoded = decode(phone_photo, LIMITS, min_side)
    width, height = decoded.image.size
    assert decoded.source_pixels == 4032 * 3024
    assert min(width, height) >= min_side
    assert width < 4032 and height < 3024  # the decoder scaled while decoding
    assert width * 3 == height * 4  # aspect kept


def test_large_jpeg_draft_and_orientation_together() -> None:
    data = with_orientation(marked_image(2048, 1536), 6, quality=90)
    decoded = decode(data, LIMITS, 256)
    width, height = decoded.image.size
    assert decoded.source_pixels == 2048 * 1536
    assert width < height and min(width, height) >= 256  # rotated to portrait, reduced
    assert red_corner(np.asarray(decoded.image)) == "tr"


def test_prepare_reports_source_pixels(phone_photo: bytes) -> None:
    prepared = prepare(phone_photo, LIMITS, SPEC)
    assert prepared.pixels == 4032 * 3024
    assert prepared.tensor.shape == (3, 224, 224)


# --- limits and refusals ---------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming width×height RGB pixels, with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def test_a_pixel_bomb_is_refused_from_its_header() -> None:
    bomb = png_claiming(50_000, 50_000)
    assert len(bomb) < 300
    # Decoding it would fail as truncated (InvalidImage); ImageTooLarge shows the header was checked first.
    with pytest.raises(ImageTooLarge) as refused:
        decode(bomb, LIMITS, 256)
    assert refused.value.status == 413


def test_the_pixel_limit_is_the_configured_one() -> None:
    data = encode(marked_image(200, 100), "PNG")
    assert decode(data, DecodeLimits(max_pixels=20_000), 64).source_pixels == 20_000
    with pytest.raises(ImageTooLarge, match="200x100"):
        decode(data, DecodeLimits(max_pixels=19_999), 64)
    with pytest.raises(ImageTooLarge):
        decode(png_claiming(12_000, 10_000), DecodeLimits(max_pixels=100_000_000), 64)


def test_the_byte_limit() -> None:
    data = encode(marked_image(64, 64), "PNG")
    assert decode(data, DecodeLimits(max_bytes=len(data)), 32).image.size == (64, 64)
    with pytest.raises(PayloadTooLarge) as refused:
        decode(data, DecodeLimits(max_bytes=len(data) - 1), 32)
    assert refused.value.status == 413


def test_an_empty_body() -> None:
    with pytest.raises(EmptyBody):
        decode(b"", LIMITS, 256)


def test_garbage() -> None:
    rng = np.random.default_rng(3)
    for garbage in (b"not an image at all", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()):
        with pytest.raises(InvalidImage):
            decode(garbage, LIMITS, 256)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(fmt: str) -> None:
    image = Image.fromarray(skimage.data.astronaut())
    data = encode(image, fmt)
    for cut in (len(data) // 2, len(data) - 64):
        with pytest.raises(InvalidImage):
            decode(data[:cut], LIMITS, 256)


def test_the_format_is_read_from_the_bytes() -> None:
    """Whatever image type the request named, the bytes say which decoder runs."""
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert decode(encode(marked_image(64, 64), fmt), LIMITS, 64).image.size == (64, 64)


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("image/jpeg", "JPEG"),
        ("image/jpg", "JPEG"),
        ("image/png", "PNG"),
        ("image/webp", "WEBP"),
        ("image/jpeg; charset=x", "JPEG"),
        ("IMAGE/PNG ; q=1", "PNG"),
    ],
)
def test_media_format_accepted(content_type: str, fmt: str) -> None:
    assert media_format(content_type) == fmt


@pytest.mark.parametrize("content_type", ["image/gif", "text/plain", "application/octet-stream", "image/svg+xml; x=1"])
def test_media_format_not_accepted(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="image/jpeg") as refused:
        media_format(content_type)
    assert refused.value.status == 415


@pytest.mark.parametrize("content_type", [None, ""])
def test_media_format_missing(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType, match="missing"):
        media_format(content_type)


# --- preprocessing ---------------------------------------------------------------------------


def test_output_shape_and_dtype() -> None:
    tensor = prepare(encode(Image.fromarray(skimage.data.chelsea()), "JPEG"), LIMITS, SPEC).tensor
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (1000, 257)])
def test_normalization_of_a_constant_color(size: tuple[int, int]) -> None:
    color = (200, 50, 127)
    tensor = prepare(encode(Image.new("RGB", size, color), "PNG"), LIMITS, SPEC).tensor
    for channel, value in enumerate(color):
        np.testing.assert_allclose(tensor[channel], (value - 127) / 128, atol=1e-6)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (4032, 3024), (300, 300), (257, 1000)])
def test_crop_box_is_a_centered_square(width: int, height: int) -> None:
    left, top, right, bottom = crop_box(width, height, SPEC)
    side = min(width, height) * SPEC.size / SPEC.resize
    assert right - left == pytest.approx(side)
    assert bottom - top == pytest.approx(side)
    assert (left + right) / 2 == pytest.approx(width / 2)
    assert (top + bottom) / 2 == pytest.approx(height / 2)
    assert left >= 0 and top >= 0 and right <= width and bottom <= height


def test_crop_box_of_a_landscape_image() -> None:
    assert crop_box(640, 480, SPEC) == pytest.approx((110.0, 30.0, 530.0, 450.0))


def test_resize_crop_keeps_the_center() -> None:
    # A landscape image whose outer thirds are black and center white: the crop sees only white.
    array = np.zeros((300, 900, 3), dtype=np.uint8)
    array[:, 300:600] = 255
    cropped = np.asarray(resize_crop(Image.fromarray(array), SPEC))
    assert cropped.shape == (224, 224, 3)
    assert cropped.min() == 255


# --- the real model on a real photo ----------------------------------------------------------


def espresso_score(model: OnnxModel, labels: list[str], data: bytes, spec: PreprocessSpec) -> tuple[str, float]:
    tensor = prepare(data, LIMITS, spec).tensor
    predictions = Postprocessor(labels)(model.run(tensor[None]), [len(labels)])[0]
    return predictions[0].label, next(p.score for p in predictions if p.label == "espresso")


def test_coffee_is_espresso_and_127_128_is_the_right_normalization(model_repository: Path) -> None:
    entry = find(model_repository, "efficientnet_lite0")
    cfg = entry.config.input
    configured = PreprocessSpec(cfg.size, cfg.resize, cfg.mean, cfg.std)
    assert (configured.mean, configured.std) == ((127.0,) * 3, (128.0,) * 3)
    model = OnnxModel(entry.model_file, "cpu", 1, cfg.name, entry.config.output.name)
    labels = entry.labels()
    data = encode(Image.fromarray(skimage.data.coffee()), "JPEG", quality=95)

    top1, score = espresso_score(model, labels, data, configured)
    assert top1 == "espresso"
    torchvision = PreprocessSpec(cfg.size, cfg.resize, TORCHVISION_MEAN, TORCHVISION_STD)
    _, torchvision_score = espresso_score(model, labels, data, torchvision)
    # EfficientNet-Lite was trained on (x - 127) / 128: the torchvision statistics score it lower.
    assert score > torchvision_score


def test_grayscale_is_resized_before_it_becomes_rgb() -> None:
    """A grayscale image is resized in one channel and converted after: the same pixels as converting first."""
    gray = Image.fromarray(skimage.data.camera())
    data = encode(gray, "PNG")
    prepared = prepare(data, LIMITS, SPEC)
    assert decode(data, LIMITS, SPEC.resize).image.mode == "L"
    np.testing.assert_array_equal(prepared.image, np.asarray(resize_crop(gray.convert("RGB"), SPEC)))


def test_a_header_claiming_more_pixels_than_its_data_holds_is_truncated_before_allocation() -> None:
    """Within the pixel limit, a PNG claiming 16 MP with a few bytes of pixel data, and a JPEG claiming
    them in a few hundred bytes, are refused from their headers; a flat image of that size is not."""
    with pytest.raises(InvalidImage, match="truncated"):
        decode(png_claiming(4000, 4000), LIMITS, 256)
    tiny = encode(Image.new("RGB", (8, 8), (10, 20, 30)), "JPEG")
    at = tiny.find(b"\xff\xc0")
    claiming = tiny[: at + 5] + struct.pack(">HH", 4000, 4000) + tiny[at + 9 :]
    with pytest.raises(InvalidImage, match="truncated"):
        decode(claiming, LIMITS, 256)
    flat = encode(Image.new("L", (4000, 4000)), "PNG")
    assert decode(flat, LIMITS, 256).source_pixels == 16_000_000
