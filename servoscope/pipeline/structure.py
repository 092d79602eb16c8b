"""An encoded image's structure, counted before any of it is decoded, so a decode's work is bounded.

A decoder's CPU is not bounded by the bytes or the pixels alone. A progressive JPEG of ten thousand
nearly empty scans, 0.8 MB, took one core 8 s to decode: each scan is one more pass over the image's
coefficient blocks. Pillow also takes one Python step for every JPEG marker segment and every PNG
chunk, so a flood of tiny segments or chunks costs time that the bytes do not show. So, before
decoding, the structure is walked and counted:

- JPEG: the scans (``SOS``), the marker segments, and the metadata (``APPn`` and ``COM``: EXIF, XMP,
  ICC profiles, comments). The walk follows the segment lengths and skips entropy-coded data the way
  libjpeg finds markers, so bytes inside metadata are never mistaken for a scan.
- PNG: the chunks (``IDAT``, text, …), the frames of an animation (``fcTL``) and the metadata chunks.
- WebP: the chunks, the frames of an animation (``ANMF``) and the metadata chunks (``EXIF``, ``XMP``, ``ICCP``).

Walks stop at the first limit passed: their own cost is bounded by the limits, not by the upload.
Truncated or garbled structure is left to the decoder, which says what is wrong with it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from servoscope.errors import ImageTooComplex


@dataclass(frozen=True, slots=True)
class StructureLimits:
    max_scans: int = 64  # JPEG scans; libjpeg's progressive script has 10, mozjpeg's rarely 20
    max_segments: int = 4096  # JPEG marker segments, PNG or WebP chunks
    max_frames: int = 1000  # animation frames (only the first is decoded; the rest are still parsed)
    max_metadata_bytes: int = 8 * 1024 * 1024  # EXIF, XMP, ICC profiles and comments together


@dataclass(slots=True)
class Structure:
    scans: int = 0
    segments: int = 0
    frames: int = 0
    metadata_bytes: int = 0
    progressive: bool = False  # a progressive JPEG
    image_data_bytes: int = 0  # a PNG's IDAT chunks together (its first frame's pixels, compressed)


_SOS, _EOI = 0xDA, 0xD9
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})  # start-of-frame markers of progressive JPEGs
_JPEG_METADATA = frozenset({*range(0xE0, 0xF0), 0xFE})  # APP0–APP15, COM
_PNG_METADATA = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"eXIf"})
_WEBP_METADATA = frozenset({b"EXIF", b"XMP ", b"ICCP"})


def check(data: bytes, fmt: str, limits: StructureLimits) -> Structure:
    """Count ``data``'s structure as ``fmt`` (Pillow's format name); raise :class:`ImageTooComplex`
    at the first limit passed."""
    walk = _WALKS.get(fmt)
    return walk(data, limits) if walk is not None else Structure()


def jpeg(data: bytes, limits: StructureLimits) -> Structure:
    """The segments up to the first scan — Pillow reads each in a Python step; libjpeg reads the
    rest in C at a few nanoseconds each — and, in a progressive JPEG that may have more scans than
    the limit (one fast count bounds them), every scan. A sequential JPEG's extra scans are an
    error libjpeg finds at once, so a baseline phone photo costs a walk of its header only."""
    found = _jpeg_walk(data, limits, whole=False)
    if found.progressive and data.count(b"\xff\xda") > limits.max_scans:
        found = _jpeg_walk(data, limits, whole=True)
    return found


def _jpeg_walk(data: bytes, limits: StructureLimits, whole: bool) -> Structure:
    found = Structure()
    pos = 2  # after SOI
    while (match := _JPEG_MARKER.search(data, pos)) is not None and match.end() + 2 <= len(data):
        marker, pos = data[match.start() + 1], match.end()
        if marker == _EOI:
            break
        length = struct.unpack_from(">H", data, pos)[0]
        _count(found, "segments", limits.max_segments, "JPEG marker segments")
        if marker == _SOS:
            _count(found, "scans", limits.max_scans, "JPEG scans")
            if not whole:
                break
        elif marker in _JPEG_METADATA:
            _add_metadata(found, length - 2, limits)
        elif marker in _PROGRESSIVE:
            found.progressive = True
        pos += length  # past the segment; after SOS, on through the entropy-coded data to the next marker
    return found


# Where libjpeg's next_marker stops: a 0xFF (the last of any fill bytes) followed by a byte that is
# not 0x00 (a stuffed 0xFF in entropy-coded data), nor a marker without a length (RST0–RST7, TEM).
# A literal first byte lets the regex engine skip ahead at memory speed (about 1 ms a phone photo).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7\x01]")


def png(data: bytes, limits: StructureLimits) -> Structure:
    found = Structure()
    pos = 8  # after the signature
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        _count(found, "segments", limits.max_segments, "PNG chunks")
        if kind == b"IDAT":
            found.image_data_bytes += length
        elif kind == b"fcTL":
            _count(found, "frames", limits.max_frames, "animation frames")
        elif kind in _PNG_METADATA:
            _add_metadata(found, length, limits)
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return found


def webp(data: bytes, limits: StructureLimits) -> Structure:
    found = Structure()
    pos = 12  # after RIFF, its size and WEBP
    end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0]) if len(data) >= 12 else 0
    while pos + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, pos)
        _count(found, "segments", limits.max_segments, "WebP chunks")
        if kind == b"ANMF":
            _count(found, "frames", limits.max_frames, "animation frames")
        elif kind in _WEBP_METADATA:
            _add_metadata(found, length, limits)
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
    return found


_WALKS = {"JPEG": jpeg, "MPO": jpeg, "PNG": png, "WEBP": webp}

_ADVICE = {
    "scans": "a progressive JPEG has about 10: re-encode it",
    "segments": "re-encode the image",
    "frames": "only the first frame is classified: send it as a still image",
}


def _count(found: Structure, field: str, limit: int, what: str) -> None:
    value = getattr(found, field) + 1
    if value > limit:
        raise ImageTooComplex(f"the image has more than {limit} {what}, the limit ({_ADVICE[field]})", field)
    setattr(found, field, value)


def _add_metadata(found: Structure, size: int, limits: StructureLimits) -> None:
    found.metadata_bytes += max(0, size)
    if found.metadata_bytes > limits.max_metadata_bytes:
        raise ImageTooComplex(
            f"the image carries more than {limits.max_metadata_bytes} bytes of metadata (EXIF, XMP, ICC profile, "
            "comments), the limit: strip the metadata",
            "metadata",
        )
