"""Admission: refusals are fast 429s with Retry-After, counted by reason; priorities share the limit;
batches are filled high-first. Requests are held open on a server whose every batch is slowed
by an injected fault (a drill's inference delay, far longer than the test's own requests take): a
request counts against the limit once its body has arrived, so a slow body holds no place."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from servoscope.loadgen.client import Connection, Endpoint, encode_request, run
from servoscope.pipeline.batcher import Lanes, Queued
from servoscope.server import api, v2
from servoscope.server.door import INFERENCE_ROUTES, LastRefusal, early_retry_hold_s, inference_target
from servoscope.stages import Timing
from support import (
    CLASSIFY,
    EXPECTED_TOP1,
    INFER,
    MODEL,
    Photo,
    ServerProcess,
    assert_error,
    metric_sum,
    metric_value,
    wait_for,
)


def classify_head(host: str, length: int, extra: str = "") -> bytes:
    """The head of a raw classify request with a JPEG body of ``length`` bytes."""
    return (
        f"POST {CLASSIFY} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    ).encode()


def send_until_closed(server: ServerProcess, data: Callable[[str], bytes]) -> bytes:
    """Send ``data(host)`` on one connection; everything the server answers until it closes it."""
    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data(host))
        while chunk := sock.recv(65536):
            received += chunk
    return received


class HeldRequest:
    """A classify request sent whole, admitted and waiting behind the slowed batches; its answer is read
    when the test asks for it."""

    def __init__(self, server: ServerProcess, body: bytes, priority: str) -> None:
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.sendall(classify_head(host, len(body), f"X-Priority: {priority}\r\n") + body)

    def finish(self) -> int:
        status = int(self.sock.recv(64).split(b" ", 2)[1])
        self.sock.close()
        return status


STATIC_10 = {"SERVOSCOPE_MAX_PENDING": "10", "SERVOSCOPE_ADMISSION": "static"}
HOLD_MS = 4000  # the injected inference delay per batch: the held requests' answers come after it
# One instance, batches of up to 16, each slowed by HOLD_MS: the first request runs alone, the next
# ones wait in the batcher (pending) until it has finished.
HOLDING_FLAGS = ("--instances", "1", "--max-batch-size", "16", "--inject-inference-delay-ms", str(HOLD_MS))


@pytest.fixture
def small_limit_server(spawn_server: Callable[..., ServerProcess]) -> ServerProcess:
    return spawn_server("--models", MODEL, env=STATIC_10)


@pytest.fixture
def holding_server(spawn_server: Callable[..., ServerProcess]) -> ServerProcess:
    return spawn_server("--models", MODEL, *HOLDING_FLAGS, env=STATIC_10)


@pytest.fixture
def held(holding_server: ServerProcess, photos: dict[str, Photo]) -> Iterator[Callable[[str], HeldRequest]]:
    opened: list[HeldRequest] = []

    def hold(priority: str) -> HeldRequest:
        request = HeldRequest(holding_server, photos["coffee"].jpeg, priority)
        opened.append(request)
        return request

    yield hold
    for request in opened:
        request.sock.close()


def wait_pending(server: ServerProcess, n: int) -> None:
    """Until the server reports ``n`` requests pending (bounded by the deadline)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        wait_for(lambda: metric_value(client.get("/metrics").text, "servoscope_requests_pending", model=MODEL) == n)


def test_low_priority_is_refused_first_high_last(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    lows = [held("low") for _ in range(5)]  # low may take half of the limit of 10
    wait_pending(holding_server, 5)
    with httpx.Client(base_url=holding_server.url, timeout=30) as client:
        refused = client.post(
            CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", "X-Priority": "low"}
        )
        assert_error(refused, 429, "capacity", "low")
        assert refused.headers["retry-after"] == "1"
        normals = [held("normal") for _ in range(4)]  # normal takes up to 90%: 9
        wait_pending(holding_server, 9)
        assert client.post(CLASSIFY, content=b"x", headers={"Content-Type": "image/jpeg"}).status_code == 429
        high = held("high")  # high takes the last place
        wait_pending(holding_server, 10)
        refused_high = client.post(
            CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", "X-Priority": "high"}
        )
        assert refused_high.status_code == 429
        assert [r.finish() for r in (*lows, *normals, high)] == [200] * 10
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "servoscope_refused_total", model=MODEL, reason="pending_limit") == 3


def test_counters_reconcile_after_a_mixed_run(small_limit_server: ServerProcess, photos: dict[str, Photo]) -> None:
    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=small_limit_server.url, timeout=60) as client:
            bodies = [photos["coffee"].jpeg] * 30 + [b"not an image"] * 5
            responses = await asyncio.gather(
                *(client.post(CLASSIFY, content=b, headers={"Content-Type": "image/jpeg"}) for b in bodies)
            )
            return [r.status_code for r in responses]

    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 400, 429}
    assert statuses.count(400) + statuses.count(429) >= 5
    expected = {code: statuses.count(code) for code in (200, 400, 429)}
    with httpx.Client(base_url=small_limit_server.url, timeout=10) as client:

        def counted() -> dict[int, float]:
            text = client.get("/metrics").text
            return {code: metric_sum(text, "servoscope_requests_total", code=str(code)) for code in expected}

        wait_for(lambda: sum(counted().values()) >= len(statuses))  # records land just after answers are sent
        assert counted() == expected
        refused = metric_sum(client.get("/metrics").text, "servoscope_refused_total")
    assert refused == statuses.count(429)


def test_bad_priority_is_a_400(client: httpx.Client, photos: dict[str, Photo]) -> None:
    response = client.post(
        CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg", "X-Priority": "urgent"}
    )
    assert_error(response, 400, "X-Priority")


def test_a_full_model_refuses_at_the_door_what_it_is_sure_to_refuse(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    """With every place taken, v1 and v2 inference is refused 429 (counted by reason) before the app;
    what the app must judge — a bad X-Priority, a version not served, another path — still is."""
    holders = [held("high") for _ in range(10)]
    wait_pending(holding_server, 10)
    jpeg = {"content": photos["coffee"].jpeg, "headers": {"Content-Type": "image/jpeg"}}
    with httpx.Client(base_url=holding_server.url, timeout=30) as client:
        for path in (INFER, f"/v2/models/{MODEL}/versions/1/infer", CLASSIFY):
            refused = client.post(path, content=b"{}", headers={"X-Priority": "high"})
            assert_error(refused, 429, "capacity", "high")
            assert refused.headers["retry-after"] == "1"
        assert_error(
            client.post(CLASSIFY, content=jpeg["content"], headers={**jpeg["headers"], "X-Priority": "urgent"}),
            400,
            "X-Priority",
        )
        assert_error(client.post(f"/v2/models/{MODEL}/versions/7/infer", content=b"{}"), 400, "version")
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
        assert [r.finish() for r in holders] == [200] * 10
        assert client.post(CLASSIFY, **jpeg).status_code == 200  # places freed: admitted again
        metrics = client.get("/metrics").text
        window = client.get("/v1/stats").json()["models"][MODEL]["windows"]["1m"]["throughput"]
    assert metric_value(metrics, "servoscope_refused_total", model=MODEL, reason="pending_limit") == 3
    assert metric_value(metrics, "servoscope_requests_total", model=MODEL, code="429") == 3
    # every inference request for the served model counts on arrival: 10 held, 3 refused, the bad
    # priority and the last one (the version not served names no served model)
    assert metric_value(metrics, "servoscope_requests_arrived_total", model=MODEL) == 15
    assert window["arrived_per_s"] > window["refused_per_s"] > 0


def test_door_refusals_keep_the_connection_in_order(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    """Refused at the door, three requests pipelined on one connection are answered in order, each
    body discarded; the last asks to close, and the connection is closed after its answer."""
    holders = [held("high") for _ in range(10)]
    wait_pending(holding_server, 10)
    body = photos["coffee"].jpeg

    def three(host: str) -> bytes:
        keep, close = classify_head(host, len(body)), classify_head(host, len(body), "Connection: close\r\n")
        return keep + body + keep + body + close + body

    received = send_until_closed(holding_server, three)
    assert received.count(b"HTTP/1.1 429 ") == 3 and received.startswith(b"HTTP/1.1 429 "), received
    assert received.count(b"retry-after: 1") == 3
    assert [r.finish() for r in holders] == [200] * 10


def test_the_same_request_sent_again_before_its_retry_after_is_refused_when_that_has_passed(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    """A client that ignores Retry-After and sends the same request again on its connection is refused
    again at the end of the wait it was told, and counted; another request on that connection, and the
    same request on another connection, are refused at once."""
    holders = [held("high") for _ in range(10)]
    wait_pending(holding_server, 10)
    body = photos["coffee"].jpeg
    jpeg = {"headers": {"Content-Type": "image/jpeg"}}

    def early_retries(client: httpx.Client) -> float:
        return metric_sum(client.get("/metrics").text, "servoscope_early_retries_total")

    url = holding_server.url
    with httpx.Client(base_url=url, timeout=30) as a, httpx.Client(base_url=url, timeout=30) as b:
        first = a.post(CLASSIFY, content=body, **jpeg)
        answered_s = time.perf_counter()
        assert first.status_code == 429 and first.headers["retry-after"] == "1"
        assert early_retries(b) == 0
        again = a.post(CLASSIFY, content=body, **jpeg)  # at once: the client did not wait its second
        assert again.status_code == 429 and time.perf_counter() - answered_s >= 0.5
        assert early_retries(b) == 1
        assert b.post(CLASSIFY, content=body, **jpeg).status_code == 429  # another connection
        assert a.post(CLASSIFY, content=body[:-1], **jpeg).status_code == 429  # another request
        assert early_retries(b) == 1
    assert [r.finish() for r in holders] == [200] * 10


def test_a_request_waiting_for_100_continue_is_refused_before_its_body_is_sent(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    """A client that announces its body with Expect: 100-continue is refused from its head: no 100, a 429
    that closes the connection, which the server closes (its linger) though the body never comes. The
    load generator's client, sending a body that large the same way, is refused without sending it."""
    holders = [held("high") for _ in range(10)]
    wait_pending(holding_server, 10)
    body = photos["coffee"].jpeg
    expect = "Expect: 100-continue\r\n"
    received = send_until_closed(holding_server, lambda host: classify_head(host, len(body), expect))
    assert received.startswith(b"HTTP/1.1 429 ") and received.count(b"HTTP/1.1") == 1, received
    assert b"connection: close" in received.lower() and b"retry-after: 1" in received

    host, port = holding_server.url.removeprefix("http://").split(":")
    endpoint = Endpoint(host, int(port))

    async def refused() -> tuple[int, bool]:
        conn = await Connection.open(endpoint)
        jpeg = {"Content-Type": "image/jpeg"}
        response = await conn.send(encode_request(endpoint, "POST", CLASSIFY, body, jpeg, expect_continue_bytes=0))
        return response.status, conn.closed

    assert run(refused()) == (429, True)
    assert [r.finish() for r in holders] == [200] * 10


def test_a_request_waiting_for_100_continue_is_asked_for_its_body_when_admitted(
    server: ServerProcess, photos: dict[str, Photo]
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    endpoint = Endpoint(host, int(port))
    jpeg = {"Content-Type": "image/jpeg"}
    request = encode_request(endpoint, "POST", CLASSIFY, photos["chelsea"].jpeg, jpeg, expect_continue_bytes=0)

    async def twice() -> list[tuple[int, bool]]:
        conn = await Connection.open(endpoint)
        answers = [await conn.send(request) for _ in range(2)]  # the connection stays usable
        conn.close()
        return [(a.status, json.loads(a.body)["predictions"][0]["label"] in EXPECTED_TOP1["chelsea"]) for a in answers]

    assert run(twice()) == [(200, True)] * 2


def test_an_early_retry_is_held_for_the_rest_of_its_retry_after_at_most_a_second() -> None:
    same, other = (b"/v1/models/m/classify", 1000), (b"/v1/models/m/classify", 999)
    last = LastRefusal(same, retry_at_s=10.0)
    assert early_retry_hold_s(last, same, now_s=9.75) == pytest.approx(0.25)
    assert early_retry_hold_s(LastRefusal(same, retry_at_s=30.0), same, now_s=9.75) == 1.0  # at most a second
    assert early_retry_hold_s(last, same, now_s=10.5) == 0.0  # it waited: refused at once
    assert early_retry_hold_s(last, other, now_s=9.75) == 0.0  # another request
    assert early_retry_hold_s(None, same, now_s=9.75) == 0.0  # the connection's first refusal


def test_a_door_refusal_whose_body_never_ends_is_closed(
    holding_server: ServerProcess, held: Callable[[str], HeldRequest], photos: dict[str, Photo]
) -> None:
    """Refused at the door, a request whose body stops halfway holds its connection for a bounded
    time (the linger): the server closes it, and the places held meanwhile are unaffected."""
    holders = [held("high") for _ in range(10)]
    wait_pending(holding_server, 10)
    body = photos["coffee"].jpeg
    received = send_until_closed(holding_server, lambda host: classify_head(host, len(body)) + body[: len(body) // 2])
    assert received.startswith(b"HTTP/1.1 429 ") and received.count(b"HTTP/1.1") == 1, received
    assert [r.finish() for r in holders] == [200] * 10


def test_the_door_knows_inference_paths_only() -> None:
    services = {"m": type("Served", (), {"version": "2"})()}
    assert inference_target("/v1/models/m/classify", services) == "m"  # type: ignore[arg-type]
    assert inference_target("/v2/models/m/infer", services) == "m"  # type: ignore[arg-type]
    assert inference_target("/v2/models/m/versions/2/infer", services) == "m"  # type: ignore[arg-type]
    for other in (
        "/v2/models/m/versions/1/infer",
        "/v2/models/x/versions/2/infer",
        "/v1/models/m",
        "/v2/models/m/ready",
        "/v1/models/m/classify/x",
        "/v2/models/m/classify",
        "/v1/models/m/infer",
        "/metrics",
        "/",
    ):
        assert inference_target(other, services) is None, other  # type: ignore[arg-type]


def test_the_door_matches_with_the_apps_own_inference_routes() -> None:
    """One route table: the door's inference routes are the very routes the app serves inference on."""
    app_routes = [*api.routes, *v2.routes]
    assert all(any(route is served for served in app_routes) for route in INFERENCE_ROUTES)
    assert {route.endpoint for route in app_routes if "POST" in (route.methods or ())} == {api.classify, v2.infer}
    assert {route.endpoint for route in INFERENCE_ROUTES} == {api.classify, v2.infer}


def _queued(priority: int, enqueued: float) -> Queued:
    future: asyncio.Future = asyncio.Future(loop=asyncio.new_event_loop())
    return Queued(None, 1, float("inf"), Timing(0.0), future, enqueued=enqueued, priority=priority)  # type: ignore[arg-type]


def test_batches_are_filled_high_first() -> None:
    lanes = Lanes()
    for i, priority in enumerate([2, 1, 0, 2, 0, 1]):
        lanes.append(_queued(priority, float(i)))
    assert lanes.oldest() == 0.0  # the low one came first: the wait window is the oldest request's
    taken = lanes.take(4)
    assert [p.priority for p in taken] == [0, 0, 1, 1]
    assert [p.enqueued for p in taken] == [2.0, 4.0, 1.0, 5.0]
    assert len(lanes) == 2 and lanes.oldest() == 0.0
