"""The structure walks (``pipeline/structure.py``) and format sniffing (``pipeline/sniff.py``): counts at
their limits, bytes inside metadata never mistaken for markers, and every known format named."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from servoscope.errors import ImageTooComplex, InvalidImage, UnsupportedMediaType
from servoscope.pipeline import structure
from servoscope.pipeline.sniff import sniff
from servoscope.pipeline.structure import StructureLimits

LIMITS = StructureLimits(max_scans=12, max_segments=64, max_frames=3, max_metadata_bytes=10_000)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def progressive(scans_added: int) -> bytes:
    """A progressive JPEG (10 scans) with ``scans_added`` copies of its last scan before EOI."""
    data = encode(Image.new("RGB", (64, 64), (90, 120, 30)), "JPEG", progressive=True)
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * scans_added + data[-2:]


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def test_scans_up_to_the_limit_are_accepted() -> None:
    assert structure.jpeg(progressive(2), LIMITS).progressive  # 12 scans: one fast count says so


def test_one_scan_above_the_limit_is_refused() -> None:
    with pytest.raises(ImageTooComplex, match="more than 12 JPEG scans") as refused:
        structure.jpeg(progressive(3), LIMITS)
    assert (refused.value.status, refused.value.what) == (413, "scans")


def test_a_baseline_jpeg_walks_its_header_only() -> None:
    """A sequential JPEG's extra scans are libjpeg's error at once, so they are not counted."""
    data = encode(Image.new("RGB", (64, 64), (90, 120, 30)), "JPEG")
    found = structure.jpeg(data, LIMITS)
    assert (found.scans, found.progressive) == (1, False)


def test_scan_markers_inside_metadata_are_not_scans() -> None:
    """An APP segment full of FF DA bytes is skipped by its length: only real scans count."""
    noisy = segment(0xE1, b"\xff\xda" * 2000)
    found = structure.jpeg(after_soi(progressive(0), noisy), StructureLimits(max_scans=12))
    assert found.scans == 10


def test_fill_bytes_before_a_marker_are_skipped() -> None:
    filled = progressive(2).replace(b"\xff\xda", b"\xff\xff\xff\xda")  # fill bytes before each scan
    noisy = segment(0xE1, b"\xff\xda" * 20)  # more possible scans than the limit: every scan is walked
    assert structure.jpeg(after_soi(filled, noisy), LIMITS).scans == 12
    with pytest.raises(ImageTooComplex, match="JPEG scans"):
        structure.jpeg(progressive(3).replace(b"\xff\xda", b"\xff\xff\xda"), LIMITS)


def test_segments_are_bounded() -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    comments = [segment(0xFE, b"")] * 64
    with pytest.raises(ImageTooComplex, match="JPEG marker segments"):
        structure.jpeg(after_soi(data, *comments), LIMITS)


def test_metadata_is_bounded_and_counted() -> None:
    data = encode(Image.new("RGB", (8, 8)), "JPEG")
    found = structure.jpeg(after_soi(data, segment(0xE2, bytes(5000))), LIMITS)
    assert found.metadata_bytes >= 5000
    with pytest.raises(ImageTooComplex, match="metadata") as refused:
        structure.jpeg(after_soi(data, segment(0xE2, bytes(5000)), segment(0xE1, bytes(5001))), LIMITS)
    assert refused.value.what == "metadata"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_chunks_frames_and_metadata() -> None:
    still = encode(Image.new("RGB", (8, 8)), "PNG")
    assert structure.png(still, LIMITS).segments == 3  # IHDR, IDAT, IEND
    at = 8 + 25  # after the signature and IHDR
    texts = still[:at] + png_chunk(b"tEXt", b"k\0v") * 64 + still[at:]
    with pytest.raises(ImageTooComplex, match="PNG chunks"):
        structure.png(texts, LIMITS)
    frames = [Image.new("RGB", (8, 8), (n * 60, 0, 0)) for n in range(4)]
    animated = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageTooComplex, match="animation frames"):
        structure.png(animated, LIMITS)
    assert structure.png(encode(frames[0], "PNG", save_all=True, append_images=frames[1:3]), LIMITS).frames == 3


def test_webp_frames() -> None:
    frames = [Image.new("RGB", (8, 8), (n * 60, 0, 0)) for n in range(4)]
    three = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:3], lossless=True)
    assert structure.webp(three, LIMITS).frames == 3
    with pytest.raises(ImageTooComplex, match="animation frames"):
        structure.webp(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True), LIMITS)


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xda", b"\x89PNG\r\n\x1a\n\0\0", b"RIFF\xff\xff\xff\xffWEBPVP8X"]
)
def test_truncated_structure_is_left_to_the_decoder(data: bytes) -> None:
    for walk in (structure.jpeg, structure.png, structure.webp):
        walk(data, LIMITS)  # no exception: the decoder reports what is wrong


@pytest.mark.parametrize(("fmt", "expected"), [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP")])
def test_accepted_formats_are_sniffed(fmt: str, expected: str) -> None:
    assert sniff(encode(Image.new("RGB", (8, 8)), fmt)) == expected


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"GIF89a\x01\x00", "GIF"),
        (b"II*\x00\x08\x00", "TIFF"),
        (b"MM\x00*\x00\x00", "TIFF"),
        (b"BM\x00\x00", "BMP"),
        (b"%PDF-1.7\n", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0", "PostScript"),
        (b"\xc5\xd0\xd3\xc6\x00", "EPS"),
        (b"PK\x03\x04", "ZIP"),
        (struct.pack(">I", 24) + b"ftypheic", "HEIC"),
        (struct.pack(">I", 24) + b"ftypavif", "AVIF"),
        (b"\xef\xbb\xbf  <?xml version='1.0'?>\n<svg xmlns='x'/>", "SVG"),
        (b"<!DOCTYPE html><html></html>", "HTML"),
        (b"<?xml version='1.0'?><root/>", "XML"),
    ],
)
def test_known_formats_are_refused_415_by_name(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=named) as refused:
        sniff(data)
    assert refused.value.status == 415


@pytest.mark.parametrize("data", [b"hello", b"\x00" * 64, b"<p>not a document we know"])
def test_unknown_bytes_are_400(data: bytes) -> None:
    with pytest.raises(InvalidImage, match="not an image: not a JPEG, PNG or WebP"):
        sniff(data)
