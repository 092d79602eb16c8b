"""Delivery: after ``respond`` (the answer handed to the connection), the server measures how long
the client took to acknowledge it. A slow reader shows there, and not in the server's stages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from servoscope.drills.slowclient import Reader, slow_open_loop
from servoscope.loadgen import Endpoint, encode_request
from servoscope.stages import parse_server_timing
from support import CLASSIFY, MODEL, Photo, ServerProcess, metric_value, wait_for

SLOW = Reader(chunk_bytes=1024, pause_s=0.02, rcvbuf_bytes=4096)  # ~60 KB answer: about a second to read
NORMAL_REQUESTS = 5


def test_a_slow_reader_shows_in_delivery_not_in_the_stages(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    srv = spawn_server("--models", MODEL)
    url = urlsplit(srv.url)
    endpoint = Endpoint(url.hostname or "", url.port or 0)
    jpeg = photos["coffee"].jpeg
    request = encode_request(endpoint, "POST", f"{CLASSIFY}?top_k=1000", jpeg, {"Content-Type": "image/jpeg"})
    [slow] = asyncio.run(slow_open_loop(endpoint, [request], [0.0], SLOW, timeout_s=30))
    assert slow.status == 200, slow.error
    client_s = slow.done - slow.sent
    server_total_s = parse_server_timing(slow.server_timing)["total"]
    assert client_s > 0.5 and server_total_s < client_s / 2  # the slow part is after the server's stages

    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for _ in range(NORMAL_REQUESTS):
            assert client.post(CLASSIFY, content=jpeg, headers={"Content-Type": "image/jpeg"}).status_code == 200

        def delivered(name: str) -> float | None:
            return metric_value(client.get("/metrics").text, name, model=MODEL)

        wait_for(lambda: delivered("servoscope_response_delivery_seconds_count") == 1 + NORMAL_REQUESTS)
        text = client.get("/metrics").text
        stats = client.get("/v1/stats").json()
    slow_bucket = metric_value(text, "servoscope_response_delivery_seconds_bucket", model=MODEL, le="0.25")
    assert slow_bucket == NORMAL_REQUESTS  # all but the slow reader delivered within 250 ms
    delivery_sum = metric_value(text, "servoscope_response_delivery_seconds_sum", model=MODEL) or 0.0
    assert 0.5 * client_s < delivery_sum <= client_s + 0.1
    window = stats["models"][MODEL]["windows"]["1m"]
    assert window["delivery"]["count"] == 1 + NORMAL_REQUESTS
    assert window["delivery"]["max"] > 0.25 > window["delivery"]["p50"]
    assert window["stages"]["respond"]["p99"] < 0.25
