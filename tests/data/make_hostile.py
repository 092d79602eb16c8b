"""Generate the hostile-input corpus: ``python tests/data/make_hostile.py [OUT_DIR]``.

Writes small files (the whole corpus well under 2 MB) and ``manifest.json`` into OUT_DIR
(default ``tests/data/hostile/``). Each manifest entry says what the file is, the Content-Type
to send it with, and the outcome the service must give: ``status`` and a word the JSON error
message must contain, or 200 with ``handling`` (and, where it is a clear photo, the acceptable
top-1 labels). ``tests/test_hostile.py`` sends each file to a running service.

Deterministic: fixed seeds, fixed zip timestamps, no clocks; regenerating gives the same files
with the same Pillow and libjpeg/libwebp versions, and the same manifest with any.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from PIL import Image

HERE = Path(__file__).resolve().parent
SEED = 20240606
PHOTO_SIZE = (240, 160)
ESPRESSO = ["espresso"]
TRIPOD = ["tripod"]  # the grayscale cameraman


@dataclass(frozen=True)
class Case:
    name: str  # file name in the corpus
    what: str
    content_type: str | None  # None: send no Content-Type
    outcome: dict[str, Any]  # {"status": 4xx, "message": word} or {"status": 200, "handling": ..., "top1": [...]}
    data: bytes

    def entry(self) -> dict[str, Any]:
        return {"what": self.what, "content_type": self.content_type, **self.outcome}


def ok(handling: str, top1: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"status": 200, "handling": handling, **({"top1": top1} if top1 else {}), **extra}


def refused(status: int, word: str) -> dict[str, Any]:
    return {"status": status, "message": word}


# --- encoders ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(width: int, height: int, bit_depth: int, color_type: int, raw: bytes, *extra: bytes) -> bytes:
    """A PNG written by hand: IHDR, ``extra`` chunks, one IDAT of ``raw`` (filter bytes included), IEND."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    chunks = [png_chunk(b"IHDR", header), *extra, png_chunk(b"IDAT", zlib.compress(raw, 9)), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def webp(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def u24(value: int) -> bytes:
    return struct.pack("<I", value)[:3]


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its start-of-frame header claiming ``width`` × ``height``."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise ValueError("no SOF marker")


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """The JPEG with an APP1 segment holding ``payload`` right after its start marker."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_with_chunk(png: bytes, *chunks: bytes) -> bytes:
    """The PNG with ``chunks`` inserted after its IHDR."""
    at = 8 + 12 + 13  # signature, IHDR
    return png[:at] + b"".join(chunks) + png[at:]


INVERSE_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_for(image: Image.Image, orientation: int) -> Image.Image:
    """The pixels to store so that, shown with EXIF ``orientation``, they look like ``image``."""
    return image.transpose(INVERSE_ORIENTATION[orientation]) if orientation in INVERSE_ORIENTATION else image.copy()


def exif(orientation: int) -> bytes:
    info = Image.Exif()
    info[0x0112] = orientation
    return info.tobytes()


def zip_archive(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), content)
    return out.getvalue()


def photo(name: str, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).resize(size, Image.Resampling.BICUBIC)


# --- the cases ---------------------------------------------------------------------------------


def bombs() -> list[Case]:
    """Headers claiming huge dimensions in a few bytes, and metadata that inflates."""
    tiny_jpeg = encode(Image.new("RGB", (8, 8), (120, 60, 30)), "JPEG", quality=50)
    tiny_progressive = encode(Image.new("RGB", (8, 8), (120, 60, 30)), "JPEG", quality=50, progressive=True)
    pixel = encode(Image.new("RGB", (1, 1), (1, 2, 3)), "WEBP", lossless=True)[12:]  # its VP8L chunk
    lossy = encode(Image.new("RGB", (16, 16), (1, 2, 3)), "WEBP", quality=50)

    def vp8x(width: int, height: int, flags: int = 0) -> bytes:
        return riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + u24(width - 1) + u24(height - 1))

    def animated_canvas(side: int) -> bytes:
        frame = riff_chunk(b"ANMF", u24(0) * 4 + u24(100) + b"\0" + pixel)
        return webp(vp8x(side, side, 0x02), riff_chunk(b"ANIM", struct.pack("<IH", 0, 0)), frame)

    def vp8_claiming(side: int) -> bytes:  # the key frame's 14-bit width and height
        return lossy[:26] + struct.pack("<HH", side, side) + lossy[30:]

    gif = encode(Image.new("P", (1, 1)), "GIF")
    gif_bomb = gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:]
    small_png = lambda *extra: png_raw(8, 8, 8, 2, bytes(8 * 25), *extra)  # noqa: E731
    text_bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(8 << 20), 9))
    icc_bomb = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(64 << 20), 9))
    return [
        Case(
            "bomb_png_60000x60000.png",
            "PNG header claiming 3.6 gigapixels in 70 bytes",
            "image/png",
            refused(413, "pixel"),
            png_raw(60000, 60000, 8, 2, b"\0"),
        ),
        Case(
            "bomb_png_10000x10000.png",
            "PNG claiming 100 MP: above the service's 50 MP limit",
            "image/png",
            refused(413, "10000x10000"),
            png_raw(10000, 10000, 8, 2, b"\0"),
        ),
        Case(
            "bomb_png_7000x7000_empty.png",
            "PNG claiming 49 MP (within the limit) with no pixel data",
            "image/png",
            refused(400, "truncated"),
            png_raw(7000, 7000, 8, 2, b""),
        ),
        Case(
            "bomb_png_7000x7000_zeros.png",
            "zlib bomb within the limit: 49 MB of zeros in 48 KB, a valid image",
            "image/png",
            ok("decoded: within the pixel limit"),
            png_raw(7000, 7000, 8, 0, bytes(7001 * 7000)),
        ),
        Case(
            "bomb_png_ztxt.png",
            "PNG whose zTXt text chunk inflates to 8 MB",
            "image/png",
            refused(400, "too large"),
            small_png(text_bomb),
        ),
        Case(
            "bomb_png_iccp.png",
            "PNG whose iCCP colour profile inflates to 64 MB",
            "image/png",
            refused(400, "too large"),
            small_png(icc_bomb),
        ),
        Case(
            "bomb_jpeg_65500x65500.jpg",
            "JPEG SOF claiming 4.3 gigapixels in 600 bytes",
            "image/jpeg",
            refused(413, "pixel"),
            patch_jpeg_size(tiny_jpeg, 65500, 65500),
        ),
        Case(
            "bomb_jpeg_10000x10000.jpg",
            "JPEG claiming 100 MP",
            "image/jpeg",
            refused(413, "10000x10000"),
            patch_jpeg_size(tiny_jpeg, 10000, 10000),
        ),
        Case(
            "bomb_jpeg_7000x7000.jpg",
            "baseline JPEG claiming 49 MP with 8x8 pixels of data",
            "image/jpeg",
            refused(400, "truncated"),
            patch_jpeg_size(tiny_jpeg, 7000, 7000),
        ),
        Case(
            "bomb_jpeg_progressive_7000x7000.jpg",
            "progressive JPEG claiming 49 MP with 8x8 pixels of data",
            "image/jpeg",
            refused(400, "truncated"),
            patch_jpeg_size(tiny_progressive, 7000, 7000),
        ),
        Case(
            "bomb_jpeg_flat_4000x3000.jpg",
            "a complete flat grey 12 MP JPEG: the most pixels per byte a real one carries",
            "image/jpeg",
            ok("decoded at 1/8 scale (DCT scaling)"),
            encode(Image.new("RGB", (4000, 3000), (128, 128, 128)), "JPEG", quality=50, progressive=True),
        ),
        Case(
            "bomb_webp_anim_canvas_16384.webp",
            "animated WebP: one 1x1 frame on a 268 MP canvas",
            "image/webp",
            refused(413, "pixel"),
            animated_canvas(16384),
        ),
        Case(
            "bomb_webp_anim_canvas_10000.webp",
            "animated WebP: one 1x1 frame on a 100 MP canvas",
            "image/webp",
            refused(413, "10000x10000"),
            animated_canvas(10000),
        ),
        Case(
            "bomb_webp_vp8x_16384.webp",
            "still WebP whose VP8X header claims 268 MP",
            "image/webp",
            refused(413, "pixel"),
            webp(vp8x(16384, 16384), pixel),
        ),
        Case(
            "bomb_webp_vp8_16383.webp",
            "lossy WebP key frame claiming 16383x16383",
            "image/webp",
            refused(413, "pixel"),
            vp8_claiming(16383),
        ),
        Case(
            "bomb_webp_vp8_10000.webp",
            "lossy WebP key frame claiming 10000x10000",
            "image/webp",
            refused(413, "10000x10000"),
            vp8_claiming(10000),
        ),
        Case(
            "bomb_gif_65535.gif",
            "GIF claiming 65535x65535, sent as image/gif",
            "image/gif",
            refused(415, "image/gif"),
            gif_bomb,
        ),
        Case("bomb_gif_65535_as_png.gif", "the same GIF sent as image/png", "image/png", refused(415, "GIF"), gif_bomb),
    ]


def broken(rng: np.random.Generator) -> list[Case]:
    """Truncated, corrupted, empty."""
    coffee = photo("coffee")
    jpeg = encode(coffee, "JPEG", quality=85)
    jpeg_72dpi = encode(coffee, "JPEG", quality=85, dpi=(72, 72))  # a JFIF density: Pillow reads no EXIF on open
    png = encode(coffee, "PNG", compress_level=9)
    still = encode(coffee, "WEBP", quality=80)
    noise = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad_crc = bytearray(png_raw(8, 8, 8, 2, bytes(8 * 25)))
    bad_crc[29] ^= 0xFF  # IHDR's checksum
    bad_zlib = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
    bad_zlib += png_chunk(b"IDAT", b"\x78\x9c" + noise[:64]) + png_chunk(b"IEND", b"")
    scan = bytearray(jpeg)
    for at in range(600, len(scan), 97):  # stomp on the entropy-coded data
        scan[at] = 0xFF if at % 2 else 0x00
    return [
        Case("zero_bytes.jpg", "an empty body", "image/jpeg", refused(400, "empty"), b""),
        Case(
            "truncated_jpeg_half.jpg",
            "the first half of a JPEG",
            "image/jpeg",
            refused(400, "truncated"),
            jpeg[: len(jpeg) // 2],
        ),
        Case(
            "truncated_jpeg_header.jpg",
            "the first 40 bytes of a JPEG",
            "image/jpeg",
            refused(400, "corrupt"),
            jpeg[:40],
        ),
        Case(
            "truncated_png_half.png",
            "the first half of a PNG",
            "image/png",
            refused(400, "truncated"),
            png[: len(png) // 2],
        ),
        Case(
            "truncated_png_signature.png",
            "a PNG signature and nothing else",
            "image/png",
            refused(400, "not a PNG"),
            png[:8],
        ),
        Case(
            "truncated_webp_half.webp",
            "the first half of a WebP",
            "image/webp",
            refused(400, "corrupt"),
            still[: len(still) // 2],
        ),
        Case(
            "corrupt_png_ihdr_crc.png",
            "PNG whose IHDR checksum is wrong",
            "image/png",
            refused(400, "not a PNG"),
            bytes(bad_crc),
        ),
        Case(
            "corrupt_png_zlib.png",
            "PNG whose IDAT is not a zlib stream",
            "image/png",
            refused(400, "broken data stream"),
            bad_zlib,
        ),
        Case(
            "corrupt_png_zero_width.png",
            "PNG whose IHDR says 0 pixels wide",
            "image/png",
            refused(400, "not a PNG"),
            png_raw(0, 8, 8, 2, b""),
        ),
        Case(
            "corrupt_jpeg_scan.jpg",
            "JPEG with its entropy-coded data overwritten",
            "image/jpeg",
            refused(400, "broken data stream"),
            bytes(scan),
        ),
        Case(
            "corrupt_jpeg_garbage.jpg",
            "a JPEG start marker followed by random bytes",
            "image/jpeg",
            refused(400, "not a JPEG"),
            b"\xff\xd8" + noise,
        ),
        Case(
            "corrupt_webp_garbage.webp",
            "a RIFF/WEBP/VP8 header followed by random bytes",
            "image/webp",
            refused(400, "corrupt"),
            b"RIFF" + struct.pack("<I", 3004) + b"WEBPVP8 " + noise,
        ),
        Case(
            "corrupt_webp_riff_size.webp",
            "WebP whose RIFF size claims 1 GB",
            "image/webp",
            refused(400, "corrupt"),
            still[:4] + struct.pack("<I", 10**9) + still[8:],
        ),
        Case(
            "random_bytes.jpg", "3000 random bytes sent as image/jpeg", "image/jpeg", refused(400, "not a JPEG"), noise
        ),
        Case(
            "corrupt_jpeg_exif_garbage.jpg",
            "a valid JPEG (JFIF, 72 dpi) whose APP1 Exif segment holds garbage (no TIFF header)",
            "image/jpeg",
            ok("served as stored: the unreadable EXIF is ignored and counted", ESPRESSO),
            with_app1(jpeg_72dpi, b"Exif\0\0" + noise[:200]),
        ),
        Case(
            "corrupt_jpeg_exif_ifd.jpg",
            "a valid JPEG (JFIF, 72 dpi) whose EXIF directory claims 60000 entries past its end",
            "image/jpeg",
            ok("served as stored: the unreadable EXIF is ignored", ESPRESSO),
            with_app1(jpeg_72dpi, b"Exif\0\0II*\0\x08\0\0\0" + struct.pack("<H", 60000) + noise[:60]),
        ),
        Case(
            "corrupt_png_exif_garbage.png",
            "a valid PNG whose eXIf chunk holds garbage",
            "image/png",
            ok("served as stored: the unreadable EXIF is ignored and counted", ESPRESSO),
            png_with_chunk(png, png_chunk(b"eXIf", noise[:300])),
        ),
    ]


def mislabelled() -> list[Case]:
    """Bytes of another format than the declared type, and declared types servoscope does not take. An
    accepted image under another image type is served by its bytes; a known format that is not accepted
    is refused 415 naming it; bytes of no known format, 400."""
    coffee = photo("coffee")
    jpeg = encode(coffee, "JPEG", quality=85)
    html = b"<!doctype html><html><body><script>alert(1)</script></body></html>\n"
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&%s;" % bytes([97 + i])) * 10) for i in range(8))
        + b']><svg xmlns="http://www.w3.org/2000/svg">&i;</svg>'
    )
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    heic = struct.pack(">I", 24) + b"ftypheic" + struct.pack(">I", 0) + b"mif1heic" + bytes(64)
    by_bytes = "served by its bytes: the declared image type names another accepted format"
    return [
        Case(
            "magic_png_as_jpeg.png",
            "a PNG sent as image/jpeg",
            "image/jpeg",
            ok(by_bytes, ESPRESSO),
            encode(coffee, "PNG"),
        ),
        Case("magic_jpeg_as_webp.jpg", "a JPEG sent as image/webp", "image/webp", ok(by_bytes, ESPRESSO), jpeg),
        Case(
            "magic_webp_as_png.webp",
            "a WebP sent as image/png",
            "image/png",
            ok(by_bytes, ESPRESSO),
            encode(coffee, "WEBP", quality=80),
        ),
        Case(
            "magic_bmp_as_jpeg.bmp",
            "a BMP sent as image/jpeg",
            "image/jpeg",
            refused(415, "BMP"),
            encode(photo("coffee", (32, 24)), "BMP"),
        ),
        Case("magic_html_as_jpeg.html", "an HTML page sent as image/jpeg", "image/jpeg", refused(415, "HTML"), html),
        Case(
            "magic_svg_laughs_as_png.svg",
            "an SVG entity-expansion bomb sent as image/png",
            "image/png",
            refused(415, "SVG"),
            laughs,
        ),
        Case("magic_pdf_as_jpeg.pdf", "a PDF document sent as image/jpeg", "image/jpeg", refused(415, "PDF"), pdf),
        Case("magic_eps_as_png.eps", "an EPS document sent as image/png", "image/png", refused(415, "EPS"), eps),
        Case(
            "magic_heic_as_jpeg.heic",
            "a HEIC file's header (an iPhone photo) sent as image/jpeg",
            "image/jpeg",
            refused(415, "HEIC"),
            heic,
        ),
        Case(
            "magic_garbage_as_png.bin",
            "bytes of no known format sent as image/png",
            "image/png",
            refused(400, "not a JPEG, PNG or WebP"),
            bytes(range(7, 250)) * 4,
        ),
        Case(
            "magic_svg_laughs.svg",
            "the same SVG sent as image/svg+xml",
            "image/svg+xml",
            refused(415, "image/svg+xml"),
            laughs,
        ),
        Case("type_missing.jpg", "a good JPEG sent with no Content-Type", None, refused(415, "Content-Type"), jpeg),
        Case(
            "type_octet_stream.jpg",
            "a good JPEG sent as application/octet-stream",
            "application/octet-stream",
            refused(415, "application/octet-stream"),
            jpeg,
        ),
        Case("type_text_html.jpg", "a good JPEG sent as text/html", "text/html", refused(415, "text/html"), jpeg),
        Case(
            "type_jpeg_with_params.jpg",
            "a good JPEG sent as 'Image/JPEG; charset=binary'",
            "Image/JPEG; charset=binary",
            ok("served: media type parameters and case ignored", ESPRESSO),
            jpeg,
        ),
    ]


def polyglots() -> list[Case]:
    """Files that are two things at once. servoscope never stores or re-serves an upload, so a valid
    image with something else riding along is classified on its pixels; anything else is refused."""
    coffee = photo("coffee")
    jpeg = encode(coffee, "JPEG", quality=85)
    html = b"<html><body><script>alert(document.domain)</script></body></html>"
    archive = zip_archive("payload.html", html * 20)
    comment = jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(html) + 2) + html + jpeg[2:]
    return [
        Case(
            "polyglot_jpeg_zip.jpg",
            "a valid JPEG with a ZIP archive appended (also a valid ZIP)",
            "image/jpeg",
            ok("classified on the JPEG; trailing bytes ignored", ESPRESSO),
            jpeg + archive,
        ),
        Case(
            "polyglot_jpeg_html_comment.jpg",
            "a valid JPEG carrying an HTML page in a COM segment",
            "image/jpeg",
            ok("classified on the JPEG; the comment is ignored", ESPRESSO),
            comment,
        ),
        Case(
            "polyglot_png_trailing_html.png",
            "a valid PNG with HTML after IEND",
            "image/png",
            ok("classified on the PNG; trailing bytes ignored", ESPRESSO),
            encode(coffee, "PNG") + html,
        ),
        Case(
            "polyglot_zip_then_jpeg.zip",
            "a ZIP archive with a JPEG after it",
            "image/jpeg",
            refused(415, "ZIP"),
            archive + jpeg,
        ),
        Case(
            "polyglot_gifar_as_png.gif",
            "a GIF with a ZIP appended, sent as image/png",
            "image/png",
            refused(415, "GIF"),
            encode(photo("coffee", (48, 32)).convert("P"), "GIF") + archive,
        ),
    ]


def multi_frame() -> list[Case]:
    """Animations and multi-page files. Accepted formats (APNG, animated WebP, MPO) are classified on
    their first frame; GIF and TIFF are not accepted (415), whatever type they are sent as."""
    coffee, rocket = photo("coffee"), photo("rocket")
    first = "first frame classified; later frames never decoded"
    gif = encode(coffee.convert("P"), "GIF", save_all=True, append_images=[rocket.convert("P")], duration=100)
    small = (96, 64)
    tiff = encode(
        photo("coffee", small),
        "TIFF",
        save_all=True,
        append_images=[photo("rocket", small)],
        compression="tiff_deflate",
    )
    return [
        Case(
            "animated_webp.webp",
            "animated WebP: coffee, then a rocket",
            "image/webp",
            ok(first, ESPRESSO),
            encode(coffee, "WEBP", save_all=True, append_images=[rocket], quality=80, duration=100),
        ),
        Case(
            "animated_png.png",
            "APNG: coffee, then a rocket",
            "image/png",
            ok(first, ESPRESSO),
            encode(coffee, "PNG", save_all=True, append_images=[rocket], compress_level=9),
        ),
        Case(
            "multi_picture_jpeg.mpo",
            "MPO (multi-picture JPEG): coffee, then a rocket",
            "image/jpeg",
            ok(first, ESPRESSO),
            encode(coffee, "MPO", save_all=True, append_images=[rocket], quality=80),
        ),
        Case("animated_gif.gif", "animated GIF sent as image/gif", "image/gif", refused(415, "image/gif"), gif),
        Case("animated_gif_as_webp.gif", "animated GIF sent as image/webp", "image/webp", refused(415, "GIF"), gif),
        Case(
            "multi_page_tiff.tiff", "two-page TIFF sent as image/tiff", "image/tiff", refused(415, "image/tiff"), tiff
        ),
        Case(
            "multi_page_tiff_as_jpeg.tiff", "two-page TIFF sent as image/jpeg", "image/jpeg", refused(415, "TIFF"), tiff
        ),
    ]


def modes() -> list[Case]:
    """Legitimate images in every colour mode and depth: all served (200)."""
    coffee, camera = photo("coffee"), photo("camera", (224, 224))
    pixels = np.asarray(coffee).astype(np.uint16) * 257
    rgb16 = png_raw(coffee.width, coffee.height, 16, 2, b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels))
    alpha = coffee.convert("RGBA")
    mask = np.full((coffee.height, coffee.width), 255, np.uint8)
    mask[:12], mask[-12:], mask[:, :12], mask[:, -12:] = 0, 0, 0, 0  # a transparent frame around the photo
    alpha.putalpha(Image.fromarray(mask))
    palette = coffee.quantize(256, dither=Image.Dither.NONE)
    served = "served: converted to 8-bit RGB"
    return [
        Case(
            "mode_cmyk.jpg",
            "CMYK JPEG",
            "image/jpeg",
            ok(served, ESPRESSO),
            encode(coffee.convert("CMYK"), "JPEG", quality=90),
        ),
        Case(
            "mode_grayscale.jpg", "grayscale JPEG", "image/jpeg", ok(served, TRIPOD), encode(camera, "JPEG", quality=90)
        ),
        Case(
            "mode_progressive.jpg",
            "progressive JPEG",
            "image/jpeg",
            ok(served, ESPRESSO),
            encode(coffee, "JPEG", quality=85, progressive=True),
        ),
        Case("mode_rgb16.png", "16-bit-per-channel RGB PNG", "image/png", ok(served, ESPRESSO), rgb16),
        Case(
            "mode_gray16.png",
            "16-bit grayscale PNG",
            "image/png",
            ok(served, TRIPOD),
            encode(Image.fromarray(np.asarray(camera).astype(np.uint16) * 257), "PNG"),
        ),
        Case("mode_palette.png", "palette PNG", "image/png", ok(served, ESPRESSO), encode(palette, "PNG")),
        Case(
            "mode_palette_transparent.png",
            "palette PNG with a transparent index",
            "image/png",
            ok("served: transparency composited on white", ESPRESSO),
            encode(palette, "PNG", transparency=0),
        ),
        Case(
            "mode_rgba.png",
            "RGBA PNG with a transparent border",
            "image/png",
            ok("served: transparency composited on white", ESPRESSO),
            encode(alpha, "PNG"),
        ),
        Case(
            "mode_rgba.webp",
            "lossless RGBA WebP with a transparent border",
            "image/webp",
            ok("served: transparency composited on white", ESPRESSO),
            encode(alpha, "WEBP", lossless=True),
        ),
        Case(
            "mode_la.png",
            "grayscale + alpha PNG",
            "image/png",
            ok("served: transparency composited on white", TRIPOD),
            encode(camera.convert("LA"), "PNG"),
        ),
        Case("mode_bilevel.png", "1-bit PNG", "image/png", ok(served), encode(camera.convert("1"), "PNG")),
    ]


def orientations() -> list[Case]:
    """Every EXIF orientation: the pixels are stored turned, the tag says how to turn them back."""
    coffee = photo("coffee")
    upright = list(coffee.size)
    cases = []
    for n in range(1, 9):
        data = encode(stored_for(coffee, n), "JPEG", quality=90, exif=exif(n))
        cases.append(
            Case(
                f"orientation_{n}.jpg",
                f"JPEG with EXIF orientation {n}",
                "image/jpeg",
                ok(f"served upright: EXIF orientation {n} applied", ESPRESSO, upright=upright),
                data,
            )
        )
    for fmt, ext, media in (("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp")):
        data = encode(stored_for(coffee, 6), fmt, exif=exif(6))
        cases.append(
            Case(
                f"orientation_6.{ext}",
                f"{fmt} with EXIF orientation 6",
                media,
                ok("served upright: EXIF orientation 6 applied", ESPRESSO, upright=upright),
                data,
            )
        )
    return cases


def work() -> list[Case]:
    """Small uploads whose decoding work their bytes and pixels do not show: scans, segments, chunks,
    frames and metadata, each refused at its limit (413) before any of it is decoded — or, where the
    work stays bounded without a limit, served."""
    coffee = photo("coffee")
    jpeg = encode(coffee, "JPEG", quality=85)
    flat = encode(Image.new("RGB", (3000, 2000), (128, 128, 128)), "JPEG", quality=50, progressive=True)
    empty_scan = min(jpeg_scans(flat), key=len)  # a few bytes: one pass over every block, all zero
    com = b"\xff\xfe\x00\x02"  # an empty comment segment
    frame = encode(Image.new("RGB", (1, 1), (1, 2, 3)), "WEBP", lossless=True)[12:]  # a 1x1 VP8L chunk
    anmf = riff_chunk(b"ANMF", u24(0) * 4 + u24(100) + b"\0" + frame)
    vp8x = riff_chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(0) + u24(0))
    return [
        Case(
            "work_jpeg_scans_10000.jpg",
            "progressive JPEG (6 MP) with 10,000 scans, nearly all empty",
            "image/jpeg",
            refused(413, "scans"),
            flat[:-2] + empty_scan * 10_000 + flat[-2:],
        ),
        Case(
            "work_jpeg_segments_20000.jpg",
            "JPEG with 20,000 empty comment segments before its scan",
            "image/jpeg",
            refused(413, "segments"),
            jpeg[:2] + com * 20_000 + jpeg[2:],
        ),
        Case(
            "work_jpeg_restart_every_mcu.jpg",
            "JPEG with a restart marker after every MCU (legitimate)",
            "image/jpeg",
            ok("served: restart markers are the decoder's own work", ESPRESSO),
            encode(coffee, "JPEG", quality=85, restart_marker_blocks=1),
        ),
        Case(
            "work_jpeg_restart_flood.jpg",
            "JPEG with 100,000 stray restart markers after its scan",
            "image/jpeg",
            ok("served: stray markers after the scan are skipped in C", ESPRESSO),
            jpeg[:-2] + b"\xff\xd0" * 100_000 + jpeg[-2:],
        ),
        Case(
            "work_jpeg_icc_200k.jpg",
            "JPEG carrying a 200 KB ICC profile (4 APP2 segments)",
            "image/jpeg",
            ok("served: the profile is within the metadata limit and never applied", ESPRESSO),
            encode(coffee, "JPEG", quality=85, icc_profile=icc_profile(200_000)),
        ),
        Case(
            "work_jpeg_metadata_over_limit.jpg",
            "JPEG carrying 300 KB of comments, above the test server's 256 KiB metadata limit",
            "image/jpeg",
            refused(413, "metadata"),
            jpeg[:2] + comment_segments(300_000) + jpeg[2:],
        ),
        Case(
            "work_jpeg_xmp_laughs.jpg",
            "JPEG whose XMP packet is an entity-expansion (billion laughs) bomb",
            "image/jpeg",
            ok("served: XMP is never parsed", ESPRESSO),
            with_app1(jpeg, xmp_laughs()),
        ),
        Case(
            "work_png_idat_8000.png",
            "PNG whose pixels come in 8,000 tiny IDAT chunks",
            "image/png",
            refused(413, "chunks"),
            tiny_idat_png(8000),
        ),
        Case(
            "work_png_text_8000.png",
            "PNG with 8,000 small tEXt chunks",
            "image/png",
            refused(413, "chunks"),
            png_with_chunk(encode(coffee, "PNG"), *[png_chunk(b"tEXt", b"k\0v")] * 8000),
        ),
        Case("work_apng_frames_2000.png", "APNG with 2,000 frames", "image/png", refused(413, "frames"), apng(2000)),
        Case(
            "work_webp_frames_2000.webp",
            "animated WebP with 2,000 frames",
            "image/webp",
            refused(413, "frames"),
            webp(vp8x, riff_chunk(b"ANIM", struct.pack("<IH", 0, 0)), *[anmf] * 2000),
        ),
        Case(
            "work_orientation_panorama.jpg",
            "a 5040x160 panorama stored turned (160x5040), EXIF orientation 6",
            "image/jpeg",
            ok("served upright: the orientation swaps the long side", ESPRESSO, upright=[5040, 160]),
            encode(stored_for(panorama(coffee, 21), 6), "JPEG", quality=75, exif=exif(6)),
        ),
    ]


def jpeg_scans(data: bytes) -> list[bytes]:
    """Each scan of a JPEG: its SOS segment and entropy-coded data, up to the next marker."""
    scans, at = [], data.find(b"\xff\xda")
    while at >= 0:
        end = at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
        while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
            end += 1
        scans.append(data[at:end])
        at = data.find(b"\xff\xda", end)
    return scans


def icc_profile(size: int) -> bytes:
    """A well-formed ICC header claiming ``size`` bytes, padded with zeros (never applied)."""
    return struct.pack(">I", size) + b"lcms" + bytes(28) + b"acsp" + bytes(size - 40)


def comment_segments(total: int) -> bytes:
    piece = b"\xff\xfe" + struct.pack(">H", 65000 + 2) + bytes(65000)
    return piece * (total // 65000 + 1)


def xmp_laughs() -> bytes:
    entities = "".join(f'<!ENTITY l{i + 1} "{f"&l{i};" * 10}">' for i in range(9))
    packet = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY l0 "ha">{entities}]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">&l9;</x:xmpmeta>'
    )
    return b"http://ns.adobe.com/xap/1.0/\0" + packet.encode()


def tiny_idat_png(chunks: int) -> bytes:
    """A valid 64x64 grey PNG whose zlib stream is split into one-byte IDAT chunks (and a last one)."""
    stream = zlib.compress(bytes(64 * 65), 9)
    pieces = [stream[i : i + 1] for i in range(min(chunks - 1, len(stream) - 1))]
    filler = [b""] * (chunks - 1 - len(pieces))  # empty IDAT chunks are legal
    rest = stream[len(pieces) :]
    idats = [png_chunk(b"IDAT", piece) for piece in (*pieces, *filler, rest)]
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(idats) + png_chunk(b"IEND", b"")


def apng(frames: int) -> bytes:
    """An 8x8 APNG of ``frames`` frames, written by hand (Pillow merges identical frames)."""
    raw = zlib.compress(bytes(8 * 25), 9)

    def fctl(sequence: int) -> bytes:
        return png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, 8, 8, 0, 0, 1, 10, 0, 0))

    chunks = [
        png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)),
        png_chunk(b"acTL", struct.pack(">II", frames, 0)),
        fctl(0),
        png_chunk(b"IDAT", raw),
    ]
    for n in range(1, frames):
        chunks += [fctl(2 * n - 1), png_chunk(b"fdAT", struct.pack(">I", 2 * n) + raw)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + png_chunk(b"IEND", b"")


def panorama(image: Image.Image, copies: int) -> Image.Image:
    strip = Image.new("RGB", (image.width * copies, image.height))
    for n in range(copies):
        strip.paste(image, (n * image.width, 0))
    return strip


def corpus() -> list[Case]:
    rng = np.random.default_rng(SEED)
    return [*bombs(), *broken(rng), *mislabelled(), *polyglots(), *multi_frame(), *modes(), *orientations(), *work()]


def write(out: Path, make: Callable[[], list[Case]] = corpus) -> dict[str, Any]:
    """Write every case and the manifest into ``out`` (old files of the corpus are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    cases = make()
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    for case in cases:
        (out / case.name).write_bytes(case.data)
    manifest = {"generator": "tests/data/make_hostile.py", "files": {case.name: case.entry() for case in cases}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "hostile"
    files = write(target)["files"]
    total = sum((target / name).stat().st_size for name in files)
    print(f"{len(files)} files, {total} bytes, in {target}")
