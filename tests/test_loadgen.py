"""The load client and schedules: pure schedule and statistics checks, then a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

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
from servoscope.loadgen import client as client_module
from servoscope.loadgen.client import parse_head
from servoscope.loadgen.stats import stage_means_ms

# ---------------------------------------------------------------- schedules (pure)


def test_poisson_rate_within_tolerance_over_many_arrivals() -> None:
    rate, duration = 200.0, 100.0
    times = poisson_arrivals(rate, duration, seed=1)
    assert abs(len(times) / duration - rate) / rate < 0.02
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g > 0 for g in gaps)
    assert times[0] >= 0 and times[-1] < duration
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
    expect: str = "continue"  # to Expect: 100-continue — "continue", "refuse" (429 and close) or "ignore" (silence)
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
                if headers.get("expect") == "100-continue" and self.expect == "refuse":
                    writer.write(b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    await reader.read()  # until the client closes: it must not send the body
                    return
                if headers.get("expect") == "100-continue" and self.expect == "continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.bodies.append(body)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                reply = str(len(body)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer-Timing: inference;dur=1.500, "
                    b"total;dur=2.000\r\n" + f"Content-Length: {len(reply)}\r\n\r\n".encode() + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def tiny_server(delay_s: float = 0.0, expect: str = "continue") -> AsyncIterator[tuple[TinyServer, Endpoint]]:
    app = TinyServer(delay_s, expect)
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


@pytest.mark.parametrize("expect", ["continue", "refuse", "ignore"])
def test_a_large_body_is_sent_once_the_server_asks_for_it(expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body of EXPECT_CONTINUE_BYTES or more waits for 100 Continue: sent after it, never sent when the
    server answers first (the connection is closed then), sent anyway when the server says nothing."""
    monkeypatch.setattr(client_module, "EXPECT_CONTINUE_WAIT_S", 0.2)

    async def main() -> None:
        async with tiny_server(expect=expect) as (app, endpoint):
            small = encode_request(endpoint, "POST", "/", b"s" * 1000)
            large = encode_request(endpoint, "POST", "/", b"L" * client_module.EXPECT_CONTINUE_BYTES)
            assert b"Expect: 100-continue" in large.head and b"Expect" not in small.head
            conn = await Connection.open(endpoint)
            response = await conn.send(large, timeout_s=10)
            conn.close()
        if expect == "refuse":
            assert (response.status, conn.closed, app.bodies) == (429, True, [])
        else:
            assert (response.status, response.body) == (200, str(len(large.body)).encode())
            assert app.bodies == [large.body]

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
            result = await sequential(
                endpoint, [encode_request(endpoint, "POST", "/", b"q")], count=5, max_duration_s=10
            )
        assert [s.status for s in result.samples] == [200] * 5
        assert app.connections == 1

    asyncio.run(main())


def test_a_reply_that_is_not_http_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ProtocolError):
        parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")


# ---------------------------------------------------------------- profiles (pure)

from servoscope.loadgen import profiles  # noqa: E402
from servoscope.loadgen.mixes import Mix, MixImage, draw, generated, parse_mix  # noqa: E402
from servoscope.loadgen.results import counts, histogram, latency_json, stage_percentiles, timeline  # noqa: E402
from servoscope.loadgen.targets import Target, encode, v2_body  # noqa: E402
from servoscope.server.v2 import deserialize_bytes, split_body  # noqa: E402


def test_fleet_rate_scales_requests_per_minute_to_one_instance() -> None:
    assert profiles.fleet_rate(10_000, 8) == pytest.approx(20.833, abs=1e-3)
    assert profiles.fleet_rate(600, 1) == 10.0
    with pytest.raises(ValueError):
        profiles.fleet_rate(100, 0)


@pytest.mark.parametrize(
    "text, expected",
    [("15%@60s", (60.0, 1.15)), ("+15%@1m", (60.0, 1.15)), ("-20%@30", (30.0, 0.8)), ("100%@500ms", (0.5, 2.0))],
)
def test_steps_parse(text: str, expected: tuple[float, float]) -> None:
    at, factor = profiles.parse_step(text)
    assert (at, factor) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["15@60s", "15%", "x%@1s", "15%@soon"])
def test_bad_steps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        profiles.parse_step(text)


def test_ramp_and_duration_parse() -> None:
    assert profiles.parse_ramp("5:40@30s") == (5.0, 40.0, 30.0)
    assert profiles.parse_ramp("5:40") == (5.0, 40.0, None)
    assert profiles.parse_duration("1.5m") == 90.0 and profiles.parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        profiles.parse_ramp("5-40")


def test_step_profile_raises_the_rate_from_its_time() -> None:
    profile = profiles.step(20, 120, [(60, 1.15)])
    assert profile.rate_at(59.9) == 20 and profile.rate_at(60) == pytest.approx(23)
    assert profile.expected_count == pytest.approx(20 * 60 + 23 * 60)
    times = profiles.arrivals(profile, "poisson", seed=1)
    before = sum(1 for t in times if t < 60)
    after = len(times) - before
    assert before == pytest.approx(1200, rel=0.1) and after == pytest.approx(1380, rel=0.1)


def test_constant_arrivals_follow_a_step_exactly() -> None:
    times = profiles.arrivals(profiles.step(10, 2, [(1, 2.0)]), "constant")
    assert len(times) == 30
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(0.1) and gaps[-1] == pytest.approx(0.05)
    assert times == profiles.arrivals(profiles.step(10, 2, [(1, 2.0)]), "constant")


def test_ramp_arrivals_thicken_linearly() -> None:
    profile = profiles.ramp(0, 100, 10, 10)  # 0 → 100/s: 500 expected, the second half holds 375
    assert profile.expected_count == pytest.approx(500)
    times = profiles.arrivals(profile, "constant")
    assert len(times) == 500
    assert sum(1 for t in times if t >= 5) == pytest.approx(375, abs=1)
    assert all(0 <= a < b < 10 for a, b in itertools.pairwise(times))
    poisson = profiles.arrivals(profile, "poisson", seed=4)
    assert len(poisson) == pytest.approx(500, rel=0.15)
    assert poisson == profiles.arrivals(profile, "poisson", seed=4) != profiles.arrivals(profile, "poisson", seed=5)


def test_a_constant_profile_matches_the_plain_poisson_rate_and_respects_the_limit() -> None:
    times = profiles.arrivals(profiles.constant(200, 50), "poisson", seed=2)
    assert len(times) / 50 == pytest.approx(200, rel=0.03)
    assert len(profiles.arrivals(profiles.constant(200, 50), "poisson", seed=2, limit=10)) == 10


def test_profiles_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError):
        profiles.constant(0, 10)
    with pytest.raises(ValueError):
        profiles.step(10, 60, [(60, 1.2)])  # the step is not inside the run
    with pytest.raises(ValueError):
        profiles.constant(10, 7200)  # longer than the hard cap


# ---------------------------------------------------------------- mixes (pure, and cached images)


def test_mix_parses_shares_and_sizes() -> None:
    assert parse_mix("70%:4032x3024,30%:320x240") == [(0.7, (4032, 3024)), (0.3, (320, 240))]
    for bad in ("70%:4032x3024", "70:10x10,30%:10x10", "100%:10by10", "100%:0x10"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_generated_mix_has_the_stated_sizes_formats_and_shares(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    mix = generated(parse_mix("75%:64x48,25%:32x24"), 0.5, tmp_path, photos=("coffee", "chelsea"))
    assert len(mix.images) == 8 and sum(mix.weights) == pytest.approx(1)
    for image in mix.images:
        with Image.open(io.BytesIO(image.data)) as decoded:
            size, fmt = image.label.split(".")
            assert f"{decoded.width}x{decoded.height}" == size and decoded.format.lower() == fmt
            assert image.content_type == f"image/{fmt}"
    again = generated(parse_mix("75%:64x48,25%:32x24"), 0.5, tmp_path, photos=("coffee", "chelsea"))
    assert [i.data for i in again.images] == [i.data for i in mix.images]  # from the cache
    picks = draw(mix, 4000, seed=9)
    assert picks == draw(mix, 4000, seed=9)
    big = sum(1 for i in picks if mix.images[i].label.startswith("64x48"))
    png = sum(1 for i in picks if mix.images[i].label.endswith("png"))
    assert big / 4000 == pytest.approx(0.75, abs=0.03) and png / 4000 == pytest.approx(0.5, abs=0.03)


def test_a_mix_needs_weights_that_sum_to_one() -> None:
    with pytest.raises(ValueError):
        Mix((MixImage(b"x", "image/jpeg", "x"),), (0.5,), "bad")


# ---------------------------------------------------------------- targets (pure)


def test_v2_request_is_a_binary_bytes_tensor_the_server_can_read() -> None:
    body, head_length = v2_body(b"\xff\xd8jpeg")
    request_json, binary = split_body(body, str(head_length))
    tensor = request_json["inputs"][0]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("image", "BYTES", [1])
    assert deserialize_bytes(binary[: tensor["parameters"]["binary_data_size"]]) == [b"\xff\xd8jpeg"]
    endpoint = Endpoint("127.0.0.1", 9)
    head = encode(Target("v2", "m"), endpoint, MixImage(b"\xff\xd8jpeg", "image/jpeg", "x")).head.decode()
    assert (
        head.startswith("POST /v2/models/m/infer HTTP/1.1")
        and f"Inference-Header-Content-Length: {head_length}" in head
    )


def test_v1_and_raw_requests() -> None:
    endpoint = Endpoint("127.0.0.1", 9)
    image = MixImage(b"png", "image/png", "x")
    v1 = encode(Target("v1", "m"), endpoint, image)
    assert (
        v1.head.startswith(b"POST /v1/models/m/classify ")
        and b"Content-Type: image/png" in v1.head
        and v1.body == b"png"
    )
    raw = encode(Target("raw", path="/x", content_type="application/octet-stream"), endpoint, image)
    assert raw.head.startswith(b"POST /x ") and b"Content-Type: application/octet-stream" in raw.head
    get = encode(Target("raw", path="/v2/health/live", method="GET"), endpoint, image)
    assert get.head.startswith(b"GET /v2/health/live ") and get.body == b""
    with pytest.raises(ValueError):
        Target("raw", path="x")


# ---------------------------------------------------------------- results (pure)


def test_counts_histogram_and_timeline_from_samples() -> None:
    samples = [
        Sample(0.1, 0.1, 0.2, 200, server_timing="inference;dur=4.000, total;dur=5.000"),
        Sample(0.5, 0.5, 1.6, 200, server_timing="inference;dur=2.000, total;dur=3.000"),
        Sample(1.2, 1.2, 1.3, 503),
        Sample(1.4, 1.4, 1.9, 0, error="TimeoutError: slow"),
    ]
    tally = counts(samples, scheduled=5)
    assert tally["sent"] == 4 and tally["not_sent"] == 1 and tally["answered"] == 3
    assert tally["answered_by_status"] == {"200": 2, "503": 1} and tally["transport_errors"] == 1
    assert tally["transport_errors_by_kind"] == {"TimeoutError": 1}
    lat = latency_json(histogram([0.1, 1.1]))
    assert (
        lat["count"] == 2 and lat["max"] == pytest.approx(1100, rel=1e-3) and lat["p50"] == pytest.approx(100, rel=1e-3)
    )
    rows = timeline(samples, 0.0, [0.1, 0.5, 1.2, 1.4, 1.8])
    assert [r["offered"] for r in rows] == [2, 3] and [r["sent"] for r in rows] == [2, 2]
    assert [r["answered"] for r in rows] == [1, 2] and [r["errors"] for r in rows] == [0, 2]
    assert rows[1]["p50_ms"] == pytest.approx(1100)
    stages = stage_percentiles(s.server_timing for s in samples if s.server_timing)
    assert list(stages) == ["inference", "total"] and stages["inference"]["p50"] == pytest.approx(3.0)


def test_the_progress_line_reports_the_last_second_and_the_whole_run() -> None:
    import io

    from servoscope.loadgen.progress import Progress
    from servoscope.loadgen.schedule import RunResult

    out = io.StringIO()
    progress = Progress(out)
    result = RunResult(0.0, 10.0)
    progress.started(result)
    for i in range(10):
        sample = Sample(i * 0.1, i * 0.1, i * 0.1 + 0.02, 200 if i else 500, late_s=0.003 if i == 5 else 0.0)
        result.samples.append(sample)
        progress.ended(sample)
    line = progress.line()
    assert "errors 1" in line and "sender late max 3.0 ms" in line and "p50 20.0" in line
    assert "last 1s p50 -" in progress.line()  # nothing new since
