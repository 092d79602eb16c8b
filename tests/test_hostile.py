"""Hostile input against a real server: every file of ``tests/data/hostile/`` (one test each, its
outcome from the manifest), then transport-level abuse on raw loopback sockets — bodies over the
limit, bodies that never end, slow bodies, huge and many headers — and the memory of the process
over the whole corpus. Each is answered with a bounded 4xx JSON error (or the connection closed),
or served (200) where the input is legitimate; other clients are served meanwhile.

Bounds, never speed: socket timeouts bound each wait; no fixed sleeps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import requests

from servoscope.pipeline.decode import DecodeLimits, decode
from servoscope.server.run import MAX_HEAD_BYTES, MAX_HEADERS
from support import (
    CLASSIFY,
    INFER,
    Photo,
    ServerProcess,
    assert_error,
    classify,
    metric_sum,
    start_server,
    top1,
    wait_for,
)

CORPUS = Path(__file__).parent / "data" / "hostile"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())["files"]
MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = BODY_TIMEOUT_S + 20.0  # bound on any one wait for the server: far above the timeout
CORPUS_ROUNDS = 4
METADATA_LIMIT_BYTES = 256 * 1024  # the corpus's metadata-over-limit case carries 300 KB
RSS_GROWTH_BOUND_BYTES = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def hostile_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own (a small body limit, a short body timeout), shared by its tests:
    ``spawn_server`` is per test, and one start per corpus file would dominate the run."""
    env = {
        "SERVOSCOPE_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "SERVOSCOPE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "SERVOSCOPE_PREPROCESS_WORKERS": "2",
        "SERVOSCOPE_MAX_IMAGE_METADATA_BYTES": str(METADATA_LIMIT_BYTES),
    }
    server = start_server(model_repository, tmp_path_factory.mktemp("hostile"), env=env)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def hostile_client(hostile_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_server.url, timeout=SOCKET_TIMEOUT_S) as client:
        yield client


@pytest.fixture
def still_serves(hostile_client: httpx.Client, photos: dict[str, Photo]) -> Iterator[None]:
    """After the test, a good request is answered correctly: the abuse broke nothing."""
    yield
    assert top1(classify(hostile_client, photos["coffee"].jpeg)) == "espresso"


def send(client: httpx.Client, name: str) -> httpx.Response:
    return classify(client, (CORPUS / name).read_bytes(), MANIFEST[name]["content_type"])


# --- the corpus --------------------------------------------------------------------------------


def test_corpus_is_small_and_complete() -> None:
    """Small enough to keep in the repository: the files that show work the bytes do not (floods of
    segments, chunks and frames) are mostly repeats and zeros, which git stores compressed."""
    names = {path.name for path in CORPUS.iterdir()} - {"manifest.json"}
    assert names == set(MANIFEST)
    assert sum((CORPUS / name).stat().st_size for name in names) < 4 * 1024 * 1024
    assert all((CORPUS / name).stat().st_size < MAX_BODY_BYTES for name in names)


def test_generator_is_deterministic_and_matches_the_manifest(tmp_path: Path) -> None:
    """Regenerating gives the committed manifest, and the same bytes twice over."""
    spec = importlib.util.spec_from_file_location("make_hostile", CORPUS.parent / "make_hostile.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # dataclasses look their module up there
    try:
        spec.loader.exec_module(generator)
    finally:
        del sys.modules[spec.name]
    first, second = generator.write(tmp_path / "a"), generator.write(tmp_path / "b")
    assert first["files"] == MANIFEST
    assert second == first
    for name in MANIFEST:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file(hostile_client: httpx.Client, name: str) -> None:
    expected = MANIFEST[name]
    response = send(hostile_client, name)
    if expected["status"] != 200:
        assert_error(response, expected["status"], expected["message"])
        return
    assert response.status_code == 200, f"{name} ({expected['handling']}): {response.text}"
    if "top1" in expected:
        assert top1(response) in expected["top1"], f"{name}: {expected['handling']}"


def test_unreadable_exif_is_served_and_counted(hostile_client: httpx.Client) -> None:
    """A photo with broken EXIF is served as stored, and the ignored metadata is counted by reason."""

    def ignored() -> float:
        text = hostile_client.get("/metrics").text
        return metric_sum(text, "servoscope_image_metadata_ignored_total", reason="exif_unreadable")

    before = ignored()
    for name in ("corrupt_jpeg_exif_garbage.jpg", "corrupt_png_exif_garbage.png"):
        assert top1(send(hostile_client, name)) == "espresso"
    wait_for(lambda: ignored() >= before + 2)  # recorded once each answer has been delivered
    assert ignored() == before + 2


@pytest.mark.parametrize("name", sorted(n for n, e in MANIFEST.items() if "upright" in e))
def test_orientation_is_applied(name: str) -> None:
    """Each EXIF orientation decodes to the upright picture: orientation_1's pixels (at the centre of
    a panorama of them)."""
    limits = DecodeLimits()
    reference = np.asarray(decode((CORPUS / "orientation_1.jpg").read_bytes(), limits, 224).image, np.int16)
    entry = MANIFEST[name]
    image = decode((CORPUS / name).read_bytes(), limits, 224).image
    assert list(image.size) == entry["upright"]
    height, width = reference.shape[:2]
    left, top = (image.width - width) // 2, (image.height - height) // 2
    centre = np.asarray(image.crop((left, top, left + width, top + height)), np.int16)
    assert np.abs(centre - reference).mean() < 8, f"{name} is not upright"


def test_first_frame_only() -> None:
    """Multi-frame images are classified on frame 0 (coffee), never on a later one (a rocket)."""
    limits = DecodeLimits()
    reference = np.asarray(decode((CORPUS / "orientation_1.jpg").read_bytes(), limits, 224).image, np.int16)
    for name in ("animated_webp.webp", "animated_png.png", "multi_picture_jpeg.mpo"):
        image = np.asarray(decode((CORPUS / name).read_bytes(), limits, 224).image, np.int16)
        assert np.abs(image - reference).mean() < 8, f"{name} is not its first frame"


# --- early answers reach every client ------------------------------------------------------------
# A body over the limit (413, from Content-Length) and an unaccepted type (415) are answered before
# the body is read. Python's http.client (under urllib) writes its whole body before it reads, and
# always sends Connection: close: the answer must still reach it, not a connection reset.

EARLY_REFUSALS = {  # paths, Content-Type, body size, status, a word of the error
    "413-body-over-limit": ((CLASSIFY, INFER), "image/jpeg", 8 * MAX_BODY_BYTES, 413, "limit"),
    "415-tiff": ((CLASSIFY,), "image/tiff", MAX_BODY_BYTES - 1000, 415, "image/tiff"),
}
TRIES = 5


def post_urllib(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT_S) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def post_requests(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    response = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=SOCKET_TIMEOUT_S)
    return response.status_code, response.text


def post_httpx(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    response = httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=SOCKET_TIMEOUT_S)
    return response.status_code, response.text


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize("case", sorted(EARLY_REFUSALS))
@pytest.mark.parametrize("post", [post_urllib, post_requests, post_httpx], ids=["urllib", "requests", "httpx"])
def test_early_refusals_reach_every_client(
    hostile_server: ServerProcess, post: Callable[[str, bytes, str], tuple[int, str]], case: str
) -> None:
    paths, content_type, size, status, word = EARLY_REFUSALS[case]
    body = b"\xff\xd8\xff" + bytes(size - 3)
    for path in paths:
        for _ in range(TRIES):
            code, text = post(hostile_server.url + path, body, content_type)
            assert code == status, (path, text)
            assert word in json.loads(text)["error"], text


# --- raw sockets -------------------------------------------------------------------------------


@contextlib.contextmanager
def connect(server: ServerProcess) -> Iterator[socket.socket]:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
    try:
        yield sock
    finally:
        sock.close()


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what the server sends for every error)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {buffer!r}"
        buffer += chunk
    raw_head, body = buffer.split(b"\r\n\r\n", 1)
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def assert_json_error(response: tuple[int, dict[str, str], bytes], status: int, *words: str) -> None:
    code, headers, body = response
    assert code == status, (code, body)
    assert headers["content-type"].startswith("application/json")
    message = json.loads(body)["error"]
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed: reads drain whatever else it sent, until EOF or a reset."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def send_while_open(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


@pytest.mark.usefixtures("still_serves")
def test_body_over_limit_with_content_length_is_refused_before_it_is_read(hostile_server: ServerProcess) -> None:
    """The headers alone declare too much: 413 comes back though only 64 KiB of the body was sent."""
    with connect(hostile_server) as sock:
        sock.sendall(head("POST", CLASSIFY, {"Content-Type": "image/jpeg", "Content-Length": str(50 * MAX_BODY_BYTES)}))
        sock.sendall(b"\xff\xd8" + bytes(64 * 1024))
        assert_json_error(read_response(sock), 413, str(MAX_BODY_BYTES))
        assert closed_by_server(sock)  # the unsent rest is not waited for beyond the linger


@pytest.mark.usefixtures("still_serves")
def test_chunked_body_over_limit_is_refused_once_past_it(hostile_server: ServerProcess) -> None:
    piece = bytes(64 * 1024)
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    with connect(hostile_server) as sock:
        sock.sendall(head("POST", CLASSIFY, {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}))
        for _ in range(MAX_BODY_BYTES // len(piece) + 2):  # just past the limit, never terminated
            send_while_open(sock, chunk)
        assert_json_error(read_response(sock), 413, str(MAX_BODY_BYTES))
        assert closed_by_server(sock)


@pytest.mark.usefixtures("still_serves")
def test_chunked_body_that_never_ends_times_out(hostile_server: ServerProcess, photos: dict[str, Photo]) -> None:
    """Small chunks, forever: 408 after the body timeout, then the connection is closed, and a normal
    client is served while this one is held."""
    with connect(hostile_server) as sock:
        sock.sendall(head("POST", CLASSIFY, {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}))
        sock.sendall(b"2\r\n\xff\xd8\r\n")
        with httpx.Client(base_url=hostile_server.url, timeout=SOCKET_TIMEOUT_S) as other:
            assert top1(classify(other, photos["coffee"].jpeg)) == "espresso"
        sock.settimeout(0.2)  # a bound on each wait for the answer while chunks keep coming
        response = None
        for _ in range(int(SOCKET_TIMEOUT_S / 0.2)):
            send_while_open(sock, b"1\r\n\x00\r\n")
            with contextlib.suppress(TimeoutError):
                response = read_response(sock)
                break
        assert response is not None, "no answer to a body that never ends"
        assert_json_error(response, 408, "body timeout")
        sock.settimeout(SOCKET_TIMEOUT_S)
        assert closed_by_server(sock)


@pytest.mark.usefixtures("still_serves")
def test_slowloris_body_times_out_while_others_are_served(
    hostile_server: ServerProcess, photos: dict[str, Photo]
) -> None:
    """A declared 10 KB body trickled a byte at a time: 408 after the body timeout; meanwhile
    another client is classified normally."""
    with connect(hostile_server) as sock:
        sock.sendall(head("POST", CLASSIFY, {"Content-Type": "image/jpeg", "Content-Length": "10000"}))
        sock.sendall(b"\xff")
        with httpx.Client(base_url=hostile_server.url, timeout=SOCKET_TIMEOUT_S) as other:
            for _ in range(3):
                assert top1(classify(other, photos["coffee"].jpeg)) == "espresso"
        sock.settimeout(0.2)
        response = None
        for _ in range(int(SOCKET_TIMEOUT_S / 0.2)):
            send_while_open(sock, b"\xd8")
            with contextlib.suppress(TimeoutError):
                response = read_response(sock)
                break
        assert response is not None, "no answer to a slow body"
        assert_json_error(response, 408, "body")
        sock.settimeout(SOCKET_TIMEOUT_S)
        assert closed_by_server(sock)


@pytest.mark.usefixtures("still_serves")
def test_slow_headers_time_out(hostile_server: ServerProcess) -> None:
    """Headers that never finish: 408 after the (same) timeout, and the connection closed."""
    with connect(hostile_server) as sock:
        sock.sendall(f"POST {CLASSIFY} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
        assert_json_error(read_response(sock), 408, "headers")
        assert closed_by_server(sock)


@pytest.mark.usefixtures("still_serves")
def test_idle_connection_is_closed(hostile_server: ServerProcess) -> None:
    with connect(hostile_server) as sock:
        assert sock.recv(1) == b""


@pytest.mark.usefixtures("still_serves")
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Huge": "a" * (MAX_HEAD_BYTES + 1)}, id="one-huge-header"),
        pytest.param({"X-Huge": "a" * (8 * MAX_HEAD_BYTES)}, id="one-enormous-header"),
        pytest.param({f"X-Many-{i}": "b" for i in range(MAX_HEADERS + 1)}, id="many-headers"),
        pytest.param({f"X-Big-{i}": "c" * 1000 for i in range(MAX_HEAD_BYTES // 1000 + 1)}, id="many-big-headers"),
    ],
)
def test_huge_or_many_headers(hostile_server: ServerProcess, headers: dict[str, str]) -> None:
    with connect(hostile_server) as sock:
        send_while_open(sock, head("GET", "/v2/health/live", headers))
        assert_json_error(read_response(sock), 431, "header")
        assert closed_by_server(sock)


def test_huge_request_line(hostile_server: ServerProcess) -> None:
    with connect(hostile_server) as sock:
        send_while_open(sock, head("GET", "/v2/health/live?" + "q" * (2 * MAX_HEAD_BYTES), {}))
        assert_json_error(read_response(sock), 431, "request line")
        assert closed_by_server(sock)


def test_headers_below_the_limits_are_served(hostile_server: ServerProcess) -> None:
    headers = {f"X-Fine-{i}": "d" * 100 for i in range(MAX_HEADERS - 10)}
    with connect(hostile_server) as sock:
        sock.sendall(head("GET", "/v2/health/live", headers))
        code, _, body = read_response(sock)
        assert code == 200, body


# --- memory ------------------------------------------------------------------------------------


def process_rss(server: ServerProcess) -> int:
    """The server's resident memory, its children's included (none expected, but counted if any)."""
    process = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in (process, *process.children(recursive=True)))


def test_memory_stays_bounded_over_the_corpus(
    hostile_server: ServerProcess, hostile_client: httpx.Client, photos: dict[str, Photo]
) -> None:
    """One warm-up round (lazy imports, pools, caches), then CORPUS_ROUNDS rounds of the whole
    corpus: the resident memory grows by less than RSS_GROWTH_BOUND_BYTES, and the server still serves."""
    names = sorted(MANIFEST)
    for name in names:
        assert send(hostile_client, name).status_code == MANIFEST[name]["status"], name
    before = process_rss(hostile_server)
    for _ in range(CORPUS_ROUNDS):
        for name in names:
            assert send(hostile_client, name).status_code == MANIFEST[name]["status"], name
    growth = process_rss(hostile_server) - before
    print(f"RSS before {before / 2**20:.1f} MiB, growth over {CORPUS_ROUNDS} rounds {growth / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_BOUND_BYTES, f"RSS grew {growth / 2**20:.1f} MiB"
    assert top1(classify(hostile_client, photos["coffee"].jpeg)) == "espresso"
