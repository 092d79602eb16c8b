"""Image bytes → an RGB image no larger than the model needs, bounded in bytes and pixels.

The header is read and the pixel count checked before any pixel is decoded. JPEGs much
larger than needed are decoded with DCT-domain downscaling (``Image.draft``), which is
several times cheaper than a full decode followed by a resize.

What is accepted, on purpose (``tests/data/make_hostile.py`` holds a case for each):

- Formats: JPEG, PNG and WebP, named by the request's ``Content-Type`` (any other type: 415) and
  found in the bytes (other bytes: 400, "not a PNG image"). GIF and TIFF are refused, animated or not.
- Multi-frame images of an accepted format — APNG, animated WebP, MPO (multi-picture JPEG) — are
  classified on their **first frame**; later frames are never decoded. The pixel limit applies
  to the whole canvas, so an animation's canvas cannot be larger than a still image.
- Every colour mode and depth (CMYK, 16-bit, palette, alpha, grayscale, 1-bit) becomes 8-bit RGB;
  transparency is composited on white; the EXIF orientation is applied.
- Bytes after the image's end (a polyglot's ZIP or HTML) are ignored: only pixels are used,
  and the upload is never stored or served back.
- Header bombs are refused on the header (413). Text and colour-profile chunks that inflate past
  Pillow's ``MAX_TEXT_CHUNK`` are refused (400), as are truncated or corrupt images.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from servoscope.errors import (
    EmptyBody,
    ImageTooLarge,
    InvalidImage,
    PayloadTooLarge,
    UnsupportedMediaType,
)

# Content type → the Pillow format that must be found in the bytes.
MEDIA_TYPES: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
}
ANY_IMAGE = None  # a media type of None: sniff among the accepted formats
_ACCEPTED_FORMATS = sorted(set(MEDIA_TYPES.values()))


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000


def media_format(content_type: str | None) -> str:
    """The Pillow format for a request's ``Content-Type``, or a 415 error saying what is accepted."""
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
    image: Image.Image  # RGB, possibly downscaled while decoding
    source_pixels: int  # width × height of the encoded image


def decode(data: bytes, limits: DecodeLimits, min_side: int, fmt: str | None = None) -> Decoded:
    """Decode ``data`` to RGB, its shorter side no smaller than ``min_side`` where the source allows.

    ``fmt`` is the Pillow format the bytes must be in (None: any accepted format).
    """
    if not data:
        raise EmptyBody("the request body is empty: send the image bytes")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes, above the limit of {limits.max_bytes}")
    image = _open(data, fmt, limits)
    source_pixels = image.width * image.height
    try:
        _first_frame(image)
        _draft(image, min_side)
        # The whole encoded image in one decoder call: Pillow releases the GIL for each call, and
        # re-taking it after every 64 KiB block (40 times for a phone photo) stalls the decode
        # threads behind the event loop (bench/preprocess.py, "GIL hand-offs").
        image.decodermaxblock = max(image.decodermaxblock, len(data))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return Decoded(to_rgb(image), source_pixels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"cannot decode the {image.format} image: {exc}") from None


def _open(data: bytes, fmt: str | None, limits: DecodeLimits) -> Image.Image:
    formats = [fmt] if fmt else _ACCEPTED_FORMATS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"image dimensions exceed the pixel limit of {limits.max_pixels}") from None
    except UnidentifiedImageError:
        wanted = f"a {fmt} image" if fmt else f"an image ({', '.join(_ACCEPTED_FORMATS)})"
        raise InvalidImage(f"the body is not {wanted}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        what = f"{fmt} image" if fmt else "image"
        raise InvalidImage(f"cannot read the {what}'s header, truncated or corrupt: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, above the limit of {limits.max_pixels}"
        )
    return image


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
