"""``servoscope load`` end to end: against the real service (checked against its own counters),
the v2 and raw targets, and a stalling loopback server that proves there is no coordinated omission."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from servoscope.cli import main
from servoscope.loadgen import Connection, Endpoint, profiles
from servoscope.loadgen.mixes import Mix, MixImage, generated, parse_mix
from servoscope.loadgen.runner import LoadPlan, execute, result_json
from servoscope.loadgen.targets import Target, encode
from support import CLASSIFY, MODEL, ServerProcess, metric_sum, wait_for

METRICS_DEADLINE_S = 15.0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("load-images")


def port_of(server: ServerProcess) -> str:
    return server.url.rsplit(":", 1)[1]


def requests_total(client: httpx.Client) -> float:
    """The server's own count of answered requests (every status), from /metrics."""
    return metric_sum(client.get("/metrics").text, "servoscope_requests_total")


def wait_for_count(client: httpx.Client, expected: float) -> float:
    """The counter once it reaches ``expected`` (it is recorded just after each response is sent)."""

    def reached() -> float | None:
        value = requests_total(client)
        return value if value >= expected else None

    return wait_for(reached, f"{expected:g} requests counted", METRICS_DEADLINE_S)


def load(server: ServerProcess, cache_dir: Path, out: Path, *args: str) -> dict[str, Any]:
    argv = ["load", "--port", port_of(server), "--cache-dir", str(cache_dir), "--seed", "3", "-o", str(out), *args]
    assert main(argv) == 0
    return json.loads(out.read_text())


def check_counts(result: dict[str, Any], before: float, client: httpx.Client) -> None:
    counts = result["counts"]
    assert counts["sent"] > 0
    assert counts["sent"] == counts["answered"] + counts["transport_errors"] + counts["unfinished"]
    assert counts["unfinished"] == 0 and not result["hit_time_cap"]
    # every answer counts, 200 or not (admission may refuse some with 429 when the machine is busy)
    assert sum(counts["answered_by_status"].values()) == counts["answered"], counts
    assert counts["answered_by_status"].get("200", 0) > 0, counts
    assert wait_for_count(client, before + counts["answered"]) - before == counts["answered"]


def test_open_loop_against_the_service_agrees_with_its_counters(
    server: ServerProcess, client: httpx.Client, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = requests_total(client)
    result = load(
        server,
        cache_dir,
        tmp_path / "open.json",
        "--rate",
        "15",
        "--step",
        "20%@1.5s",
        "--duration",
        "3s",
        "--mix",
        "80%:320x240,20%:160x120",
        "--png-share",
        "0.25",
        "--plot",
        str(tmp_path / "open.png"),
    )
    check_counts(result, before, client)
    assert result["counts"]["scheduled"] == result["counts"]["sent"]
    assert result["settings"]["loop"] == "open" and result["profile"]["name"] == "step"
    assert result["latency_ms"]["count"] == result["counts"]["ok"]
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]
    assert result["latency_histogram"]["hdr_base64"]
    assert {"preprocess", "inference", "total"} <= set(result["stages_ms"])
    assert result["stages_ms"]["inference"]["count"] == result["counts"]["ok"]
    assert sum(row["offered"] for row in result["timeline"]) == result["counts"]["scheduled"]
    assert sum(row["answered"] for row in result["timeline"]) == result["counts"]["answered"]
    assert set(result["mix"]["sent_by_kind"]) <= {"320x240.jpeg", "320x240.png", "160x120.jpeg", "160x120.png"}
    png = tmp_path / "open.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 100
    err = capsys.readouterr().err
    assert "sent" in err and "p99" in err and "sender late max" in err  # the live progress line


def test_closed_loop_against_the_service_agrees_with_its_counters(
    server: ServerProcess, client: httpx.Client, cache_dir: Path, tmp_path: Path
) -> None:
    before = requests_total(client)
    result = load(server, cache_dir, tmp_path / "closed.json", "--concurrency", "3", "--duration", "2s", "--quiet")
    check_counts(result, before, client)
    assert result["settings"]["loop"] == "closed" and result["profile"] is None
    assert result["counts"]["sent"] >= 3


def test_v2_target_gets_labels_and_drives_the_service(
    server: ServerProcess, client: httpx.Client, cache_dir: Path, tmp_path: Path
) -> None:
    mix = generated(parse_mix("100%:320x240"), 0.0, cache_dir, photos=("coffee",))
    endpoint = Endpoint("127.0.0.1", int(port_of(server)))
    request = encode(Target("v2", MODEL), endpoint, mix.images[0])

    async def one() -> tuple[int, bytes]:
        conn = await Connection.open(endpoint)
        try:
            response = await conn.send(request, timeout_s=30)
        finally:
            conn.close()
        return response.status, response.body

    status, body = asyncio.run(one())
    assert status == 200, body[:300]
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert outputs["labels"]["shape"][0] == 1 and outputs["labels"]["datatype"] == "BYTES"
    assert outputs["labels"]["data"][0] == "espresso"

    before = requests_total(client)
    result = load(
        server, cache_dir, tmp_path / "v2.json", "--target", "v2", "--rate", "10", "--duration", "1.5s", "--quiet"
    )
    check_counts(result, before, client)
    assert result["settings"]["path"] == f"/v2/models/{MODEL}/infer"


def test_raw_target_posts_the_body_with_its_content_type(
    server: ServerProcess, client: httpx.Client, cache_dir: Path, tmp_path: Path
) -> None:
    before = requests_total(client)
    args = (
        "--target",
        "raw",
        "--path",
        CLASSIFY,
        "--content-type",
        "image/jpeg",
        "--rate",
        "10",
        "--duration",
        "1.5s",
        "--quiet",
    )
    result = load(server, cache_dir, tmp_path / "raw.json", *args)
    check_counts(result, before, client)
    assert result["settings"]["target"] == "raw" and result["settings"]["path"] == CLASSIFY


def test_other_hosts_are_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--host", "10.1.2.3", "--rate", "1", "--duration", "1s", "--cache-dir", str(tmp_path)]) == 2
    assert "loopback" in capsys.readouterr().err
    assert Endpoint("10.1.2.3", 80, ("10.1.2.3",)).host == "10.1.2.3"  # constructed only: no connection is made


def test_flags_that_contradict_each_other_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["--rate", "5", "--concurrency", "2"],
        [],
        ["--rate", "5", "--fleet-rpm", "100"],
        ["--rate", "5", "--step", "x"],
    ):
        assert main(["load", "--cache-dir", str(tmp_path), *args]) == 2
    assert "servoscope load:" in capsys.readouterr().err


# ---------------------------------------------------------------- no coordinated omission


@dataclass
class StallingServer:
    """Answers at once, except that the ``stall_at``-th request starts a ``stall_s`` stall:
    nothing is answered until it ends (requests keep arriving and wait)."""

    stall_at: int
    stall_s: float
    seen: int = 0
    stall_start: float = 0.0
    stall_end: float = 0.0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            for _ in range(100_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = [
                    int(ln.split(b":")[1]) for ln in head.lower().split(b"\r\n") if ln.startswith(b"content-length:")
                ]
                await reader.readexactly(length[0] if length else 0)
                self.seen += 1
                if self.seen == self.stall_at:
                    self.stall_start = time.perf_counter()
                    self.stall_end = self.stall_start + self.stall_s
                wait = self.stall_end - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(b"HTTP/1.1 200 OK\r\nServer-Timing: total;dur=0.100\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_a_server_stall_shows_in_every_request_scheduled_during_it(tmp_path: Path) -> None:
    rate, duration_s, stall_s = 100.0, 3.0, 1.0
    app = StallingServer(stall_at=int(rate), stall_s=stall_s)  # about 1 s in

    async def main_() -> dict[str, Any]:
        server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
        async with server:
            endpoint = Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])
            mix = Mix((MixImage(b"x" * 100, "image/jpeg", "x"),), (1.0,), "one test body")
            plan = LoadPlan(
                endpoint,
                Target("raw", path="/"),
                mix,
                "open",
                profiles.constant(rate, duration_s),
                "constant",
                duration_s=duration_s,
                timeout_s=10,
                connections=8,
            )
            outcome = await execute(plan)
            await asyncio.wait(app.handlers, timeout=5)
        return {"outcome": outcome, "result": result_json(plan, outcome)}

    run = asyncio.run(main_())
    samples = run["outcome"].result.samples
    result = run["result"]
    assert app.stall_end > 0 and all(s.ok for s in samples)
    assert len(samples) == result["counts"]["answered"] == int(rate * duration_s)
    during = [s for s in samples if app.stall_start <= s.scheduled < app.stall_end]
    assert len(during) >= 0.8 * rate * stall_s  # the schedule went on through the stall
    for s in during:  # each waited at least until the stall ended, from its scheduled time
        assert s.latency_s >= app.stall_end - s.scheduled - 1e-3
    earliest = min(during, key=lambda s: s.scheduled)
    assert earliest.latency_s >= 0.9 * stall_s
    assert result["latency_ms"]["p99"] >= 0.9 * 1000 * stall_s  # the reported P99 includes them
    assert result["latency_ms"]["max"] >= 1000 * earliest.latency_s * 0.999
