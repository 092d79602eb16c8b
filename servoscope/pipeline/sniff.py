"""What an upload is, read from its first bytes: one of the accepted formats, or a clear refusal.

The accepted formats (JPEG, PNG, WebP) are told by their signatures, as Pillow tells them. Bytes of a
format that is known but not accepted are refused with 415 naming it — RFC 9110 §15.5.16 allows 415
when inspecting the data shows an unsupported format, and "a PDF document is not accepted" tells a
client more than "not a JPEG". Anything else is refused with 400: it is no image at all.
"""

from __future__ import annotations

from servoscope.errors import InvalidImage, UnsupportedMediaType

ACCEPTED = "JPEG, PNG or WebP"

# (prefix, offset, format) for the accepted formats; each is the whole of Pillow's own test
_ACCEPTED_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"WEBP", 8, "WEBP"),  # after RIFF and its size
)

# Known formats that are not accepted: (prefix, offset, what the refusal calls it)
_REFUSED_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"II+\x00", 0, "a BigTIFF image"),
    (b"BM", 0, "a BMP image"),
    (b"\x00\x00\x01\x00", 0, "an ICO image"),
    (b"8BPS", 0, "a Photoshop document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream"),
    (b"\xff\x0a", 0, "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL image"),
    (b"%PDF-", 0, "a PDF document"),
    (b"%!PS", 0, "a PostScript or EPS document"),
    (b"\xc5\xd0\xd3\xc6", 0, "an EPS document"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a gzip archive"),
)
# ISO base media files (HEIF, AVIF …) name their brand after "ftyp" at offset 4
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "a HEIC image",
    b"heix": "a HEIC image",
    b"hevc": "a HEIC image",
    b"heim": "a HEIC image",
    b"heis": "a HEIC image",
    b"mif1": "a HEIF image",
    b"msf1": "a HEIF image",
    b"avif": "an AVIF image",
    b"avis": "an AVIF image",
}
# Text formats, told by a tag near the start (after any byte-order mark or whitespace); the first wins
_TEXT_TAGS: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "an SVG document"),
    (b"<!doctype html", "an HTML document"),
    (b"<html", "an HTML document"),
)
_TEXT_PROLOGUE_BYTES = 1024


def sniff(data: bytes) -> str:
    """The Pillow format of ``data`` among the accepted ones; else 415 for a known format, 400 for none."""
    for prefix, offset, fmt in _ACCEPTED_SIGNATURES:
        if data.startswith(prefix, offset) and (fmt != "WEBP" or data.startswith(b"RIFF")):
            return fmt
    what = known_format(data)
    if what is not None:
        raise UnsupportedMediaType(f"the body is {what}, which is not accepted: send a {ACCEPTED} image")
    raise InvalidImage(f"the body is not an image: not a {ACCEPTED}, nor any other known format")


def known_format(data: bytes) -> str | None:
    """What ``data`` is, among the known formats that are not accepted; None if it is none of them."""
    for prefix, offset, what in _REFUSED_SIGNATURES:
        if data.startswith(prefix, offset):
            return what
    if data.startswith(b"ftyp", 4):
        return _FTYP_BRANDS.get(data[8:12], "an ISO media file (MP4, HEIF …)")
    head = data[:_TEXT_PROLOGUE_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):
        found = sorted((head.find(tag), what) for tag, what in _TEXT_TAGS if tag in head)
        if found:
            return found[0][1]
        if head.startswith(b"<?xml"):
            return "an XML document"
    return None
