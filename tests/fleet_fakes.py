"""Fake replicas for the fleet view's tests (named as fakes: this machine cannot host eight real ones).

A fake replica is a real telemetry sink (servoscope.telemetry.recorder) fed requests whose
latencies come from a service-time model instead of a model, on a manual clock, and served as a
real ``/v1/stats`` document over loopback HTTP by a stdlib HTTP server.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from prometheus_client import CollectorRegistry

from servoscope.clock import ManualClock
from servoscope.stages import STAGES, Timing
from servoscope.telemetry.monitor import Readings
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.stats import stats
from support import idle_gauges

MODEL = "efficientnet_lite0"
START_S = 1000.0


class FakeReplica:
    """A replica whose requests take ``median_s`` × lognormal(0, ``sigma``) × ``slowdown``."""

    def __init__(self, seed: int, median_s: float = 0.05, sigma: float = 0.3) -> None:
        self.clock = ManualClock(START_S)
        self.telemetry = Telemetry(self.clock, CollectorRegistry())
        self.rng = np.random.default_rng(seed)
        self.median_s, self.sigma, self.slowdown = median_s, sigma, 1.0
        self.latencies: list[float] = []

    def run(self, seconds: float, rate: float) -> None:
        """Answer Poisson arrivals at ``rate`` for ``seconds`` of the manual clock."""
        end = self.clock.now() + seconds
        while True:
            gap = self.rng.exponential(1 / rate)
            if self.clock.now() + gap >= end:
                break
            self.clock.advance(gap)
            self.answer(self.median_s * self.slowdown * float(self.rng.lognormal(0.0, self.sigma)))
        self.clock.advance(end - self.clock.now())

    def answer(self, latency_s: float) -> None:
        start = self.clock.now()
        timing = Timing(start, model=MODEL, status=200, input_bytes=5000, input_pixels=76800, batch_size=1)
        for i, stage in enumerate(STAGES, start=1):
            timing.end(stage, start + latency_s * i / len(STAGES))
        self.telemetry.arrived(MODEL)
        self.telemetry.record(timing)
        self.latencies.append(latency_s)

    def document(self) -> dict:
        return stats(self.telemetry, idle_gauges(MODEL), Readings()).to_json()


@contextmanager
def serving(replicas: list[FakeReplica]) -> Iterator[list[str]]:
    """Each fake replica's ``/v1/stats`` over loopback HTTP; yields their URLs; stops the servers after."""
    servers = [_server(r) for r in replicas]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    finally:
        for s, t in zip(servers, threads):
            s.shutdown()
            s.server_close()
            t.join(timeout=10)


def _server(replica: FakeReplica) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(replica.document()).encode() if self.path == "/v1/stats" else b"{}"
            self.send_response(200 if self.path == "/v1/stats" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
