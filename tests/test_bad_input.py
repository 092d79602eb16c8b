"""Bad requests to ``/v1/models/{name}/classify``: one test per case. Each gets its 4xx status and a
JSON ``{"error": ...}`` that says what was wrong, and the server still classifies a good image after."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from support import CLASSIFY, Photo, ServerProcess, assert_error, classify, top1


@pytest.fixture
def still_serves(client: httpx.Client, photos: dict[str, Photo]) -> Iterator[None]:
    """After the test's bad request, a good one on the same client is answered correctly."""
    yield
    assert top1(classify(client, photos["coffee"].jpeg)) == "espresso"


pytestmark = pytest.mark.usefixtures("still_serves")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` × ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_empty_body(client: httpx.Client) -> None:
    assert_error(classify(client, b""), 400, "empty")


def test_missing_content_type(client: httpx.Client, photos: dict[str, Photo]) -> None:
    assert_error(classify(client, photos["coffee"].jpeg, content_type=None), 415, "Content-Type", "image/jpeg")


def test_wrong_content_type(client: httpx.Client, photos: dict[str, Photo]) -> None:
    assert_error(classify(client, photos["coffee"].jpeg, "text/plain"), 415, "text/plain", "image/jpeg")


def test_bytes_not_an_image(client: httpx.Client) -> None:
    assert_error(classify(client, b"this is not an image, just some text\n" * 20), 400, "not a JPEG")


def test_truncated_jpeg(client: httpx.Client, photos: dict[str, Photo]) -> None:
    data = photos["chelsea"].jpeg
    assert_error(classify(client, data[: len(data) // 2]), 400, "truncated")


def test_truncated_jpeg_header(client: httpx.Client, photos: dict[str, Photo]) -> None:
    assert_error(classify(client, photos["chelsea"].jpeg[:40]), 400)


def test_png_header_claiming_huge_dimensions(client: httpx.Client) -> None:
    """50000 × 50000 claimed by a ~100-byte PNG: refused on its header (413), never decoded."""
    data = png_claiming(50_000, 50_000)
    assert len(data) < 200
    assert_error(classify(client, data, "image/png"), 413, "pixel")


def test_png_header_above_the_configured_pixel_limit(client: httpx.Client) -> None:
    """8000 × 8000 = 64 MP: above the service's 50 MP limit, below Pillow's own bomb check."""
    assert_error(classify(client, png_claiming(8000, 8000), "image/png"), 413, "8000x8000", "50000000")


def test_body_above_limit_with_content_length(client: httpx.Client, server: ServerProcess) -> None:
    limit = server.effective["max_body_bytes"]
    response = classify(client, b"\xff\xd8" + bytes(limit))
    assert "content-length" in response.request.headers
    assert_error(response, 413, str(limit))


def test_body_above_limit_chunked(client: httpx.Client, server: ServerProcess) -> None:
    limit = server.effective["max_body_bytes"]
    piece = bytes(256 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(limit // len(piece) + 2):
            yield piece

    response = client.post(CLASSIFY, content=body(), headers={"Content-Type": "image/jpeg"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, str(limit))


def test_an_image_under_another_image_type_is_served_by_its_bytes(
    client: httpx.Client, photos: dict[str, Photo]
) -> None:
    assert top1(classify(client, photos["coffee"].jpeg, "image/png")) == "espresso"
    assert top1(classify(client, photos["coffee"].encode("PNG"), "image/webp")) == "espresso"


def test_a_known_format_that_is_not_accepted_is_415(client: httpx.Client, photos: dict[str, Photo]) -> None:
    bmp = io.BytesIO()
    Image.fromarray(photos["coffee"].pixels).save(bmp, "BMP")
    assert_error(classify(client, bmp.getvalue(), "image/jpeg"), 415, "BMP", "not accepted")
    assert_error(classify(client, b"%PDF-1.7\n%%EOF\n", "image/png"), 415, "PDF")


def test_unknown_model(client: httpx.Client, photos: dict[str, Photo]) -> None:
    response = client.post(
        "/v1/models/no_such_model/classify", content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg"}
    )
    assert_error(response, 404, "no_such_model")


@pytest.mark.parametrize("top_k", ["0", "-1", "1001", "abc", "2.5", ""])
def test_bad_top_k(client: httpx.Client, photos: dict[str, Photo], top_k: str) -> None:
    assert_error(classify(client, photos["coffee"].jpeg, top_k=top_k), 400, "top_k")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "3600001"])
def test_bad_request_timeout_header(client: httpx.Client, photos: dict[str, Photo], value: str) -> None:
    response = client.post(
        CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", "X-Request-Timeout": value}
    )
    assert_error(response, 400, "X-Request-Timeout")


def test_wrong_method(client: httpx.Client) -> None:
    assert_error(client.get(CLASSIFY), 405)


def test_unknown_path(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nothing-here"), 404)
