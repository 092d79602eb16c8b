"""Image bytes → an RGB image no larger than the model needs, bounded in bytes, pixels and work.

The format is read from the bytes, the structure counted (``structure.py``) and the header's pixel
count checked before any pixel is decoded. JPEGs much larger than needed are decoded with DCT-domain
downscaling (``Image.draft``), several times cheaper than a full decode followed by a resize.

What is accepted, on purpose (``tests/data/make_hostile.py`` holds a case for each):

- Formats: JPEG, PNG and WebP. The request's ``Content-Type`` must name one of them (else 415); the
  format itself is read from the bytes, so a JPEG sent as ``image/png`` is served as the JPEG it is
  (clients label uploads by file name, and a mislabelled photo is still a photo). Bytes of a known
  format that is not accepted — GIF, TIFF, BMP, HEIC, AVIF, PDF, SVG, PostScript, HTML, ZIP … — are
  refused 415 naming it (RFC 9110 §15.5.16: found by inspecting the data); bytes of no known format, 400.
- Structure (``structure.py``): JPEG scans, marker segments, PNG and WebP chunks, animation frames
  and metadata bytes each have a limit (413), so a decode's CPU is bounded before it is spent.
- Multi-frame images of an accepted format — APNG, animated WebP, MPO (multi-picture JPEG) — are
  classified on their **first frame**; later frames are never decoded. The pixel limit applies
  to the whole canvas, so an animation's canvas cannot be larger than a still image.
- Every colour mode and depth (CMYK, 16-bit, palette, alpha, grayscale, 1-bit) becomes 8-bit RGB;
  transparency is composited on white; the EXIF orientation is applied. EXIF that cannot be read
  (no TIFF header, a broken directory) or that is larger than a JPEG's EXIF can be is ignored — the
  image is served as stored — and :attr:`Decoded.ignored_metadata` says why, for the metrics.
- Bytes after the image's end (a polyglot's ZIP or HTML) are ignored: only pixels are used,
  and the upload is never stored or served back.
- Header bombs are refused on the header (413). Text and colour-profile chunks that inflate past
  Pillow's ``MAX_TEXT_CHUNK`` are refused (400), as are truncated or corrupt images.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from servoscope.errors import (
    EmptyBody,
    ImageTooLarge,
    InvalidImage,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from servoscope.pipeline import structure
from servoscope.pipeline.sniff import sniff

# Content type → the Pillow format that must be found in the bytes.
MEDIA_TYPES: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
}


# A flat grey or white JPEG, the most compressible there is, carries one byte per ~250 pixels with
# Huffman coding. A header claiming sixteen times that density is a truncated file, whose missing
# blocks libjpeg would decode as grey: 160 ms of CPU for 600 bytes claiming 49 MP, progressive.
MAX_JPEG_PIXELS_PER_BYTE = 4096
# Deflate inflates 1032 times at most, and a pixel is at least one bit: a PNG's pixel data holds
# 8256 pixels a byte at the very most.
MAX_PNG_PIXELS_PER_BYTE = 8 * 1032


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    structure: structure.StructureLimits = field(default_factory=structure.StructureLimits)


def media_format(content_type: str | None) -> str:
    """The Pillow format a request's ``Content-Type`` names, or a 415 error saying what is accepted.
    The bytes decide the format that is decoded (see the module's docstring)."""
    if not content_type:
        raise UnsupportedMediaType(
            f"missing Content-Type: send the raw image as one of {', '.join(sorted(MEDIA_TYPES))}"
        )
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        return MEDIA_TYPES[media]
    except KeyError:
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted: send one of {', '.join(sorted(MEDIA_TYPES))}"
        ) from None


@dataclass(frozen=True, slots=True)
class Decoded:
    image: Image.Image  # RGB, or L (grayscale: see :func:`to_rgb_or_gray`), possibly downscaled while decoding
    source_pixels: int  # width × height of the encoded image
    ignored_metadata: str | None = None  # why the EXIF was ignored ("exif_unreadable", "exif_too_large"), if it was


def decode(data: bytes, limits: DecodeLimits, min_side: int) -> Decoded:
    """Decode ``data`` to RGB, its shorter side no smaller than ``min_side`` where the source allows."""
    if not data:
        raise EmptyBody("the request body is empty: send the image bytes")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes, above the limit of {limits.max_bytes}")
    fmt = sniff(data)
    found = structure.check(data, fmt, limits.structure)
    image = _open(data, fmt, limits)
    _check_density(image, fmt, len(data), found)
    source_pixels = image.width * image.height
    try:
        _first_frame(image)
        _draft(image, min_side)
        # The whole encoded image in one decoder call: Pillow releases the GIL for each call, and
        # re-taking it after every 64 KiB block (40 times for a phone photo) stalls the decode
        # threads behind the event loop (bench/preprocess.py, "GIL hand-offs").
        image.decodermaxblock = max(image.decodermaxblock, len(data))  # type: ignore[attr-defined]  # ImageFile's
        image.load()
        orientation, ignored = exif_orientation(image)
        upright = image.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else image
        return Decoded(to_rgb_or_gray(upright), source_pixels, ignored)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"cannot decode the {image.format} image: {exc}") from None


def _open(data: bytes, fmt: str, limits: DecodeLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"image dimensions exceed the pixel limit of {limits.max_pixels}") from None
    except UnidentifiedImageError:
        raise InvalidImage(f"the body is not a {fmt} image: its header is not readable") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"cannot read the {fmt} image's header, truncated or corrupt: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, above the limit of {limits.max_pixels}"
        )
    return image


def _check_density(image: Image.Image, fmt: str, size: int, found: structure.Structure) -> None:
    """A header that claims far more pixels than the data can hold is a truncated file: refused before
    its pixels are allocated (a PNG claiming 49 MP with no pixel data cost 240 MB of memory)."""
    pixels = image.width * image.height
    if fmt == "JPEG" and pixels > size * MAX_JPEG_PIXELS_PER_BYTE:
        claimed = f"{pixels} pixels in {size} bytes"
    elif fmt == "PNG" and pixels > found.image_data_bytes * MAX_PNG_PIXELS_PER_BYTE:
        claimed = f"{pixels} pixels in {found.image_data_bytes} bytes of pixel data"
    else:
        return
    raise InvalidImage(
        f"the {fmt} claims {image.width}x{image.height} = {claimed}, far fewer than any complete image of that "
        "size holds: it is truncated"
    )


# Pillow warns (and reads on) when an EXIF directory runs past its data: the image is served as
# stored, so the warning would only repeat in the log what the metric counts.
warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning, "PIL.TiffImagePlugin")

ORIENTATION_TAG = 0x0112
MAX_EXIF_BYTES = 64 * 1024  # the most a JPEG's APP1 segment holds; a PNG's or WebP's larger EXIF is not read
# EXIF orientation → the transpose that makes the stored pixels upright (as ImageOps.exif_transpose)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(image: Image.Image) -> tuple[int, str | None]:
    """The image's EXIF orientation (1: as stored), and why its EXIF was ignored, if it was.
    Phones and editors write EXIF that does not parse; a photo is not refused for its metadata."""
    raw = image.info.get("exif") or image.info.get("Raw profile type exif")
    if not raw:
        return 1, None
    if len(raw) > MAX_EXIF_BYTES:
        return 1, "exif_too_large"
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):
        return 1, "exif_unreadable"
    if not isinstance(value, int) or not 1 <= value <= 8:
        return 1, "exif_unreadable"
    return value, None


def _first_frame(image: Image.Image) -> None:
    """Multi-frame images (APNG, animated WebP, MPO) are classified on their first frame: Pillow
    opens them there, and this says so (and holds should a plugin open elsewhere)."""
    if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
        image.seek(0)


def _draft(image: Image.Image, min_side: int) -> None:
    """Ask the JPEG decoder to scale down by 1/2, 1/4 or 1/8 while keeping the shorter side ≥ min_side."""
    if image.format not in ("JPEG", "MPO"):  # MPO: multi-picture JPEG, first picture
        return
    width, height = image.size
    short = min(width, height)
    if short < 2 * min_side:
        return
    scale = min_side / short
    requested = (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999)))
    mode = "RGB" if image.mode in ("RGB", "YCbCr") else image.mode
    image.draft(mode, requested)


def to_rgb_or_gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale stays as it is, to be converted once resized: the same pixels, and for a 49 MP
    scan 9 ms instead of 120 (a whole-image RGB copy, then three channels to resize). Else RGB."""
    return image if image.mode == "L" else to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparent areas become white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (pixels.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        low, high = float(pixels.min()), float(pixels.max())
        span = high - low if high > low else 1.0
        scaled = ((pixels.astype(np.float32) - low) * (255.0 / span)).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")
