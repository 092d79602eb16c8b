"""servoscope.client against a real server: files and bytes, Retry-After honoured (with jitter, within
a retry budget), deadlines propagated; the async client the same way."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from servoscope import errors
from servoscope.client import AsyncClient, Client, RetryBudget, RetryPolicy, media_type
from support import EXPECTED_TOP1, MODEL, Photo, ServerProcess
from test_overload import HOLDING_FLAGS, HeldRequest, wait_pending


def test_classify_a_file_and_bytes(server: ServerProcess, photos: dict[str, Photo], tmp_path: Path) -> None:
    path = tmp_path / "coffee.png"
    path.write_bytes(photos["coffee"].encode("PNG"))
    with Client(server.url) as client:
        from_file = client.classify(path, top_k=2)
        from_bytes = client.classify(photos["chelsea"].encode("WEBP"))
    assert from_file.predictions[0].label in EXPECTED_TOP1["coffee"] and len(from_file.predictions) == 2
    assert from_bytes.predictions[0].label in EXPECTED_TOP1["chelsea"] and from_bytes.attempts == 1
    assert from_file.model == MODEL and "inference" in from_file.timings_ms


def test_errors_are_servoscopes_own(server: ServerProcess, photos: dict[str, Photo]) -> None:
    with Client(server.url) as client:
        with pytest.raises(errors.UnsupportedMediaType):
            client.classify(b"GIF89a not accepted")
        with pytest.raises(errors.RequestError, match="top_k"):
            client.classify(photos["coffee"].jpeg, top_k=0)
    with Client(server.url, model="no_such_model") as client, pytest.raises(errors.ModelNotFound):
        client.classify(photos["coffee"].jpeg)


class Recording(httpx.HTTPTransport):
    """The real transport, keeping each request's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.headers)
        return super().handle_request(request)


def test_deadline_is_propagated(server: ServerProcess, photos: dict[str, Photo]) -> None:
    transport = Recording()
    with Client(server.url, transport=transport) as client:
        assert client.classify(photos["coffee"].jpeg, deadline_s=20.0, priority="high").attempts == 1
        with pytest.raises(errors.DeadlineExceeded):
            client.classify(photos["coffee"].jpeg, deadline_s=0.0)  # passed already: not sent
    (headers,) = transport.sent
    assert 0 < float(headers["x-request-timeout"]) <= 20_000 and headers["x-priority"] == "high"


def test_retry_after_is_honoured(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    srv = spawn_server(
        "--models", MODEL, *HOLDING_FLAGS, env={"SERVOSCOPE_MAX_PENDING": "4", "SERVOSCOPE_ADMISSION": "static"}
    )
    holders = [HeldRequest(srv, photos["coffee"].jpeg, "high") for _ in range(4)]
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # instead of waiting: the held requests finish, places free up
        waits.append(seconds)
        assert [h.finish() for h in holders] == [200] * 4

    try:
        wait_pending(srv, 4)
        with Client(srv.url, sleep=sleep, rng=random.Random(7)) as client:
            answer = client.classify(photos["coffee"].jpeg)
    finally:
        for holder in holders:
            holder.sock.close()
    assert answer.attempts == 2 and len(waits) == 1
    assert 1.0 <= waits[0] <= 1.5  # Retry-After: 1, jittered up to half as long again


def test_no_retry_past_the_deadline(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    srv = spawn_server(
        "--models", MODEL, *HOLDING_FLAGS, env={"SERVOSCOPE_MAX_PENDING": "2", "SERVOSCOPE_ADMISSION": "static"}
    )
    holders = [HeldRequest(srv, photos["coffee"].jpeg, "high") for _ in range(2)]
    try:
        wait_pending(srv, 2)
        with (
            Client(srv.url, sleep=lambda s: pytest.fail("retried past the deadline")) as client,
            pytest.raises(errors.Overloaded) as refused,
        ):
            client.classify(photos["coffee"].jpeg, deadline_s=0.5)  # Retry-After 1 s would pass it
        assert refused.value.retry_after_s == 1.0
        assert [h.finish() for h in holders] == [200] * 2
    finally:
        for holder in holders:
            holder.sock.close()


def test_the_budget_bounds_retries() -> None:
    budget = RetryBudget(RetryPolicy(budget_ratio=0.25, budget_min=2.0, budget_max=3.0))
    assert [budget.spend() for _ in range(3)] == [True, True, False]
    for _ in range(4):
        budget.requested()  # four requests earn one retry
    assert budget.spend() and not budget.spend()
    for _ in range(100):
        budget.requested()
    assert budget.tokens == 3.0


def test_media_type_from_bytes(photos: dict[str, Photo]) -> None:
    found = [media_type(photos["coffee"].encode(f)) for f in ("JPEG", "PNG", "WEBP")]
    assert found == ["image/jpeg", "image/png", "image/webp"]


def test_async_client(server: ServerProcess, photos: dict[str, Photo]) -> None:
    async def both() -> list[str]:
        async with AsyncClient(server.url) as client:
            answers = await asyncio.gather(*(client.classify(photos[n].jpeg) for n in ("coffee", "rocket")))
        return [a.predictions[0].label for a in answers]

    coffee, rocket = asyncio.run(both())
    assert coffee in EXPECTED_TOP1["coffee"] and rocket in EXPECTED_TOP1["rocket"]
