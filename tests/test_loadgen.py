"""The load client and schedules: pure schedule and statistics checks, then a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import AsyncIterator

import pytest

from servoscope.loadgen import (
    Connection,
    Endpoint,
    NotLoopback,
    ProtocolError,
    Sample,
    check_loopback,
    closed_loop,
    constant_arrivals,
    encode_request,
    open_loop,
    percentile,
    poisson_arrivals,
    sequential,
    summarize,
)
from servoscope.loadgen.client import parse_head
from servoscope.loadgen.stats import stage_means_ms

# ---------------------------------------------------------------- schedules (pure)


def test_poisson_rate_within_tolerance_over_many_arrivals() -> None:
    rate, duration = 200.0, 100.0
    times = poisson_arrivals(rate, duration, seed=1)
    assert abs(len(times) / duration - rate) / rate < 0.02
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g > 0 for g in gaps)
    assert 0 <= times[0] and times[-1] < duration
    mean_gap = sum(gaps) / len(gaps)
    assert mean_gap == pytest.approx(1 / rate, rel=0.02)
    # exponential gaps: the standard deviation equals the mean
    sd = math.sqrt(sum((g - mean_gap) ** 2 for g in gaps) / len(gaps))
    assert sd == pytest.approx(mean_gap, rel=0.05)


def test_poisson_is_reproducible_with_a_seed() -> None:
    assert poisson_arrivals(50, 10, seed=3) == poisson_arrivals(50, 10, seed=3)
    assert poisson_arrivals(50, 10, seed=3) != poisson_arrivals(50, 10, seed=4)


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = constant_arrivals(10, 2)
    assert len(times) == 20
    assert times[1] - times[0] == pytest.approx(0.1)


@pytest.mark.parametrize("rate, duration", [(0, 1), (-1, 1), (math.inf, 1), (10, 0), (1e7, 1000)])
def test_schedules_refuse_bad_or_unbounded_arguments(rate: float, duration: float) -> None:
    with pytest.raises(ValueError):
        poisson_arrivals(rate, duration)


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_latency_runs_from_the_scheduled_time_not_the_send_time() -> None:
    sample = Sample(scheduled=10.0, sent=10.4, done=10.5, status=200)
    assert sample.latency_s == pytest.approx(0.5)


def test_stage_means_from_server_timing_headers() -> None:
    headers = ["ingest;dur=1.000, inference;dur=4.000, total;dur=5.000", "ingest;dur=3.000, total;dur=3.000"]
    assert stage_means_ms(headers) == {"ingest": 2.0, "inference": 2.0, "total": 4.0}


# ---------------------------------------------------------------- loopback only


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert check_loopback(host) == host


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "192.168.1.5", "example.com", "::", "2001:db8::1", ""])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(NotLoopback):
        check_loopback(host)
    with pytest.raises(NotLoopback):
        Endpoint(host, 80)


# ---------------------------------------------------------------- a tiny real HTTP server


@dataclass
class TinyServer:
    """Answers every request with the length of its body; waits ``delay_s`` first (to model service time)."""

    delay_s: float = 0.0
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            for _ in range(10_000):
                head = await reader.readuntil(b"\r\n\r\n")
                _, headers = parse_head(b"HTTP/1.1 200 OK\r\n" + head.split(b"\r\n", 1)[1])
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.bodies.append(body)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                reply = str(len(body)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer-Timing: inference;dur=1.500, total;dur=2.000\r\n"
                    + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def tiny_server(delay_s: float = 0.0) -> AsyncIterator[tuple[TinyServer, Endpoint]]:
    app = TinyServer(delay_s)
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield app, Endpoint("127.0.0.1", port)
        # the clients have closed their connections: let each handler see the end of its stream
        if app.handlers:
            await asyncio.wait(app.handlers, timeout=5)


def test_client_posts_and_reads_status_headers_and_body_on_one_keep_alive_connection() -> None:
    async def main() -> None:
        async with tiny_server() as (app, endpoint):
            conn = await Connection.open(endpoint)
            request = encode_request(endpoint, "POST", "/classify", b"x" * 100_000, {"Content-Type": "image/jpeg"})
            first = await conn.send(request, timeout_s=10)
            second = await conn.send(request, timeout_s=10)
            conn.close()
        assert (first.status, first.body) == (200, b"100000")
        assert second.body == b"100000"
        assert first.server_timing == "inference;dur=1.500, total;dur=2.000"
        assert first.headers["content-type"] == "text/plain"
        assert app.connections == 1
        assert app.bodies == [b"x" * 100_000] * 2

    asyncio.run(main())


def test_closed_loop_keeps_every_worker_busy_and_summarizes() -> None:
    async def main() -> None:
        async with tiny_server() as (app, endpoint):
            requests = [encode_request(endpoint, "POST", "/", b"a"), encode_request(endpoint, "POST", "/", b"bb")]
            result = await closed_loop(endpoint, requests, concurrency=3, duration_s=0.3)
        summary = summarize(result)
        assert summary.requests > 0 and summary.errors == 0
        assert app.connections == 3
        assert set(app.bodies) == {b"a", b"bb"}
        assert summary.server_stage_mean_ms == {"inference": 1.5, "total": 2.0}

    asyncio.run(main())


def test_open_loop_counts_the_wait_for_a_busy_connection_as_latency() -> None:
    """Two requests due at once on one connection to a server taking 50 ms: the second's
    latency, from its scheduled time, includes the first one's service (no coordinated omission)."""

    async def main() -> None:
        async with tiny_server(delay_s=0.05) as (_, endpoint):
            request = encode_request(endpoint, "POST", "/", b"z")
            result = await open_loop(endpoint, [request], arrivals=[0.0, 0.0001], max_connections=1)
        first, second = sorted(result.samples, key=lambda s: s.done)
        assert first.ok and second.ok
        assert second.sent - second.scheduled >= 0.05
        assert second.latency_s >= 0.1
        assert second.latency_s > second.done - second.sent

    asyncio.run(main())


def test_sequential_sends_one_at_a_time_up_to_the_count() -> None:
    async def main() -> None:
        async with tiny_server() as (app, endpoint):
            result = await sequential(endpoint, [encode_request(endpoint, "POST", "/", b"q")], count=5, max_duration_s=10)
        assert [s.status for s in result.samples] == [200] * 5
        assert app.connections == 1

    asyncio.run(main())


def test_a_reply_that_is_not_http_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ProtocolError):
        parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
