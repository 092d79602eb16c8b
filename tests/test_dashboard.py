"""``GET /dashboard`` in real headless Chromium, against a real server under a bounded load.

Chromium is driven over the DevTools protocol (a websocket on loopback): the test waits for what
the page's script writes into the DOM (``data-*`` attributes), each wait a condition with a deadline.
The screenshots are kept under ``tests/artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from servoscope.stages import STAGE_NAMES
from support import CLASSIFY, MODEL, REPO_ROOT, Photo, ServerProcess, wait_for

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--window-size=1400,1000",
)
DEADLINE_S = 45.0
MIN_POINTS = 5  # polls drawn before the charts count as "holding data"
LOAD_REQUESTS = 400  # the most the load sends; it stops as soon as the page has what it needs
LOAD_CLIENTS = 4  # concurrent closed-loop clients, so the batcher forms batches above 1
HISTORY_S = 300  # the page keeps (and its time axis spans) five minutes of polls
TICK_STEPS_S = (10, 15, 30, 60, 120, 300)

# What the page shows, read in one expression: the test asserts on this and nothing else of the page.
SNAPSHOT_JS = """JSON.stringify({
  state: document.body.dataset.state, polls: +document.body.dataset.polls,
  statsTime: +(document.body.dataset.statsTime || 0), model: document.body.dataset.model,
  message: document.querySelector('#message').textContent,
  charts: Object.fromEntries([...document.querySelectorAll('[data-chart]')].map(el => [el.dataset.chart,
    {points: +(el.dataset.points || 0), latest: JSON.parse(el.dataset.latest || 'null'), hidden: el.hidden,
     xRange: JSON.parse(el.dataset.xRange || 'null'), ticks: el.dataset.xTicks || ''}])),
  stages: Object.fromEntries([...document.querySelectorAll('#stage-table tr[data-stage]')].map(tr => [tr.dataset.stage,
    Object.fromEntries(['p50', 'p95', 'p99'].map(q => [q, +tr.querySelector(`[data-${q}-ms]`).dataset[q + 'Ms']]))])),
  gpuNote: document.querySelector('#gpu-note').hidden ? null : document.querySelector('#gpu-note').textContent,
})"""


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


class Browser:
    """One headless Chromium page over the DevTools protocol; every wait has a deadline."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.stack = contextlib.ExitStack()
        self.ids = itertools.count(1)
        self.requested: list[str] = []  # every URL the page asked for
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._attach(profile)
        except BaseException:
            self.close()
            raise

    def _attach(self, profile: Path) -> None:
        port = self._until(lambda: _read_port(profile / "DevToolsActivePort"), "the DevTools port")
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", trust_env=False).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None))
        self.call("Network.enable")

    def _until(self, probe: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
        def alive_and_found() -> Any:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode} while waiting for {what}")
            return probe()

        return wait_for(alive_and_found, what, deadline_s)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:  # bounded by the receive timeout
            message = json.loads(self.ws.recv(timeout=DEADLINE_S))
            if message.get("method") == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def snapshot(self) -> dict[str, Any]:
        result = self.call("Runtime.evaluate", expression=SNAPSHOT_JS, returnByValue=True)
        value = result["result"].get("value")
        return json.loads(value) if value else {}

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            shot = self.snapshot()
            return shot if shot and condition(shot) else None

        return self._until(probe, what)

    def screenshot(self, path: Path) -> None:
        """The whole page, 1400 px wide."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": 1400, "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.stack.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}); `make` installs it")
    b = Browser(executable, tmp_path / "chromium-profile")
    yield b
    b.close()


class Load:
    """A bounded closed-loop load: LOAD_CLIENTS clients, at most LOAD_REQUESTS requests, stopped on exit."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url, self.body = url, body
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(LOAD_CLIENTS, thread_name_prefix="load")
        self.clients: list[httpx.Client] = []

    def _send(self, _: int) -> None:
        if self.stop.is_set():
            return
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.url, timeout=30.0, trust_env=False)
            self.clients.append(self.local.client)
        response = self.local.client.post(CLASSIFY, content=self.body, headers={"Content-Type": "image/jpeg"})
        self.codes.append(response.status_code)

    def __enter__(self) -> Load:
        self.futures = [self.pool.submit(self._send, i) for i in range(LOAD_REQUESTS)]
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self.clients:
            client.close()
        if kind is not None:
            return  # the body's own failure is the one to report
        for future in self.futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]


def small_jpeg(photo: Photo) -> bytes:
    image = Image.fromarray(photo.pixels)
    image.thumbnail((160, 160))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def holds_data(shot: dict[str, Any]) -> bool:
    stacked = shot["charts"].get("stage-p95", {})
    return (
        shot["state"] == "ok"
        and stacked.get("points", 0) >= MIN_POINTS
        and all(shot["stages"].get(stage, {}).get("p95", 0) > 0 for stage in STAGE_NAMES)
        and shot["charts"].get("batch-sizes", {}).get("points", 0) >= 1
    )


def assert_clock_axis(chart: dict[str, Any], stats_time: float) -> None:
    """The time axis spans the history from the first poll, labelled in clock time at a whole step."""
    first, last = chart["xRange"]
    assert last - first == HISTORY_S and first <= stats_time <= last, (chart["xRange"], stats_time)
    ticks = chart["ticks"].split()
    assert len(ticks) >= 2 and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in ticks), ticks
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in (t.split(":") for t in ticks)]
    steps = {(b - a) % 86400 for a, b in itertools.pairwise(seconds)}
    assert len(steps) == 1 and steps <= set(TICK_STEPS_S), ticks


def test_dashboard_charts_the_live_service(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo], browser: Browser
) -> None:
    srv = spawn_server("--models", MODEL)
    with Load(srv.url, small_jpeg(photos["coffee"])) as load:
        browser.call("Page.navigate", url=f"{srv.url}/dashboard")
        first = browser.wait_for(lambda s: s["charts"].get("total", {}).get("points", 0) >= 1, "the first poll drawn")
        browser.screenshot(ARTIFACTS / "dashboard-first-poll.png")
        assert_clock_axis(first["charts"]["total"], first["statsTime"])
        browser.wait_for(holds_data, f"{MIN_POINTS} polls with every stage's P95 above 0")
    assert 200 in load.codes
    load_end = time.time()

    # With the load stopped the last-minute window holds still: the page's newest document and
    # one fetched now must agree, to the digit.
    shot = browser.wait_for(lambda s: s["statsTime"] > load_end + 1.0, "a poll after the load ended")
    stats = httpx.get(f"{srv.url}/v1/stats", trust_env=False).json()
    window = stats["models"][MODEL]["windows"]["1m"]
    assert shot["model"] == MODEL
    assert list(shot["stages"]) == list(STAGE_NAMES)
    for stage in STAGE_NAMES:
        for q in ("p50", "p95", "p99"):
            assert shot["stages"][stage][q] == pytest.approx(window["stages"][stage][q] * 1000, rel=1e-9), (stage, q)

    charts = shot["charts"]
    stacked = charts["stage-p95"]["latest"]  # bands from the top: cumulative sums, then the total P95
    stage_p95 = [shot["stages"][s]["p95"] for s in STAGE_NAMES if s != "total"]
    assert stacked[0] == pytest.approx(sum(stage_p95))
    assert stacked[-2] == pytest.approx(stage_p95[0])
    assert stacked[-1] == pytest.approx(shot["stages"]["total"]["p95"])
    for name in (
        "total",
        "throughput",
        "errors",
        "queues",
        "batch-mean",
        "busy",
        "cpu",
        "loop-lag",
        *(f"stage-{s}" for s in STAGE_NAMES),
    ):
        assert charts[name]["points"] >= MIN_POINTS, name
    assert charts["throughput"]["latest"][0] > 0  # answered/s
    assert charts["batch-sizes"]["points"] == len(window["batches"]["size_counts"])
    if stats["gpu"]["available"]:
        assert charts["gpu"]["points"] >= MIN_POINTS
    else:
        assert charts["gpu"]["hidden"] and shot["gpuNote"] == f"no GPU — {stats['gpu']['reason']}"

    for name in ("total", "stage-p95", "cpu", "stage-inference"):
        assert_clock_axis(charts[name], shot["statsTime"])
    assert all(url.startswith(srv.url) for url in browser.requested), browser.requested  # no CDN
    browser.screenshot(ARTIFACTS / "dashboard.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_dashboard_without_telemetry_says_why(spawn_server: Callable[..., ServerProcess], browser: Browser) -> None:
    srv = spawn_server("--models", MODEL, env={"SERVOSCOPE_TELEMETRY": "false"})
    browser.call("Page.navigate", url=f"{srv.url}/dashboard")
    shot = browser.wait_for(lambda s: s["state"] == "unavailable", "the page to report /v1/stats unavailable")
    assert "503" in shot["message"] and "telemetry" in shot["message"]
    assert all(chart["points"] == 0 for chart in shot["charts"].values())
    browser.screenshot(ARTIFACTS / "dashboard-telemetry-off.png")
