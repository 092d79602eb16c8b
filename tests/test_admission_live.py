"""Admission against a real server, with clients as they behave: closed loops that retry a refusal
after 50 ms (ignoring Retry-After), slow uploaders beside fast clients, bodies below the minimum rate.
Every loop is bounded by count; pacing sleeps are the clients' own behaviour, never a wait for the server."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import CLASSIFY, MODEL, TEST_SLO_P95_MS, Photo, ServerProcess, metric_sum, metric_value, wait_for
from test_overload import classify_head

RETRY_S = 0.05  # a misbehaving client: retries a 429 after 50 ms whatever Retry-After says
MAX_TRIES = 400  # per request: bounds each client's loop


def closed_loop(server: ServerProcess, body: bytes, clients: int, requests: int) -> tuple[Counter[int], list[str]]:
    """``clients`` closed loops of ``requests`` classifications each, a 429 retried after RETRY_S:
    the final status of every request, and the Retry-After of every refusal seen."""
    finals: Counter[int] = Counter()
    retry_after: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(requests):
                for _ in range(MAX_TRIES):
                    response = http.post(CLASSIFY, content=body, headers={"Content-Type": "image/jpeg"})
                    if response.status_code != 429:
                        break
                    with lock:
                        retry_after.append(response.headers.get("retry-after", ""))
                    time.sleep(RETRY_S)
                with lock:
                    finals[response.status_code] += 1

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return finals, retry_after


def refused_total(server: ServerProcess) -> float:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        return metric_sum(http.get("/metrics").text, "servoscope_refused_total")


def test_a_closed_loop_the_service_answers_in_time_is_never_refused(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    """16 closed-loop clients keep at most 16 requests in progress: with an objective the service meets
    with them all in (a minute, on any machine), time admission refuses none of them."""
    server = spawn_server("--models", MODEL, "--slo-p95-ms", TEST_SLO_P95_MS)
    finals, retry_after = closed_loop(server, photos["coffee"].jpeg, clients=16, requests=8)
    assert finals == Counter({200: 16 * 8}) and retry_after == []
    assert refused_total(server) == 0


def test_a_closed_loop_past_the_objective_is_refused_with_retry_after_and_every_request_answered_once(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    """An objective of 1 ms no request can meet: the model admits only when idle, refuses the rest
    at once with Retry-After, and the retrying clients are all answered in the end, each once."""
    server = spawn_server("--models", MODEL, "--slo-p95-ms", "1")
    finals, retry_after = closed_loop(server, photos["coffee"].jpeg, clients=8, requests=4)
    assert finals == Counter({200: 8 * 4})
    assert retry_after and all(value.isdigit() and int(value) >= 1 for value in retry_after)
    wait_for(lambda: refused_total(server) == len(retry_after), "every refusal counted")


def slow_upload(server: ServerProcess, body: bytes, pieces: int, pause_s: float, start_s: float = 0.0) -> int:
    """One classification whose body is sent in ``pieces``, ``pause_s`` apart (a slow uplink), starting
    after ``start_s``: its status."""
    host, port = server.url.removeprefix("http://").split(":")
    head = classify_head(host, len(body))
    step = -(-len(body) // pieces)
    time.sleep(start_s)  # the client's own schedule
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        for at in range(0, len(body), step):
            time.sleep(pause_s)  # the client's own pace
            sock.sendall(body[at : at + step])
        return int(sock.recv(64).split(b" ", 2)[1])


def test_slow_uploads_hold_no_place(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    """Six uploads trickling in for two seconds each (started 0.3 s apart), beside three fast
    closed-loop clients, on a model that takes 6 requests at once: while they arrive the uploads hold
    no place — had they held one each, the fast clients would have found the model full for seconds
    — so no fast client is refused, and every upload is answered once it has arrived."""
    server = spawn_server("--models", MODEL, env={"SERVOSCOPE_ADMISSION": "static", "SERVOSCOPE_MAX_PENDING": "6"})
    body = photos["coffee"].jpeg
    with ThreadPoolExecutor(6) as pool:
        slow = [pool.submit(slow_upload, server, body, 20, 0.1, 0.3 * i) for i in range(6)]
        finals, retry_after = closed_loop(server, body, clients=3, requests=30)
        assert [future.result() for future in slow] == [200] * 6
    assert finals == Counter({200: 90}) and retry_after == []


@pytest.fixture
def rate_server(spawn_server: Callable[..., ServerProcess]) -> ServerProcess:
    env = {
        "SERVOSCOPE_BODY_GRACE_S": "0.5",
        "SERVOSCOPE_MIN_BODY_RATE_BYTES_S": "4000",
        "SERVOSCOPE_BODY_TIMEOUT_S": "30",
    }
    return spawn_server("--models", MODEL, env=env)


def test_a_body_below_the_minimum_rate_is_408_and_a_steady_one_is_served(
    rate_server: ServerProcess, photos: dict[str, Photo]
) -> None:
    """After the 0.5 s grace, a body must average 4000 B/s: 20 bytes every 50 ms (400 B/s) is answered
    408 well before its timeout; the same photo at ~100 KB/s is served."""
    body = photos["coffee"].jpeg
    host, port = rate_server.url.removeprefix("http://").split(":")
    head = classify_head(host, len(body))
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        answer = b""
        for at in range(0, len(body), 20):  # bounded by the body's length
            try:
                sock.sendall(body[at : at + 20])
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer:
                break
        sock.settimeout(5)
        for _ in range(10):  # the head and the JSON body may come in separate segments
            if b"too slowly" in answer or not answer:
                break
            try:
                more = sock.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"too slowly" in answer
    assert slow_upload(rate_server, body, 10, 0.02) == 200


def test_a_body_still_arriving_is_counted_in_ingest_not_in_the_model(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    server = spawn_server("--models", MODEL)
    body = photos["coffee"].jpeg
    host, port = server.url.removeprefix("http://").split(":")
    head = classify_head(host, len(body))

    def gauges() -> tuple[float | None, float | None, int]:
        """In ingest and pending by /metrics, and in ingest by /v1/stats."""
        with httpx.Client(base_url=server.url, timeout=10) as http:
            text, document = http.get("/metrics").text, http.get("/v1/stats").json()
        ingesting = metric_value(text, "servoscope_requests_ingesting")
        return ingesting, metric_value(text, "servoscope_requests_pending", model=MODEL), document["ingesting"]

    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body[:100])
        wait_for(lambda: gauges() == (1.0, 0.0, 1), "one request in ingest, none pending")
        sock.sendall(body[100:])
        assert int(sock.recv(64).split(b" ", 2)[1]) == 200
    wait_for(lambda: gauges() == (0.0, 0.0, 0), "nothing in ingest")
