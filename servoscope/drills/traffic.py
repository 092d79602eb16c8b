"""The drills' traffic: an image mix at a rate, open loop (Poisson, fixed seed, so both windows
get the same schedule), optionally a share of slow-reading clients; and the capacity run
(closed loop over a few concurrencies) that the rates are derived from."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servoscope.drills.slowclient import Reader, slow_open_loop
from servoscope.loadgen import (
    Connection,
    EncodedRequest,
    Endpoint,
    Sample,
    closed_loop,
    encode_request,
    open_loop,
    poisson_arrivals,
    run,
    summarize,
)
from servoscope.loadgen.images import image_set
from servoscope.models.prepare import DEFAULT_MODEL

CLASSIFY_PATH = f"/v1/models/{DEFAULT_MODEL}/classify"
SEED = 20240
REQUEST_TIMEOUT_S = 30.0
SAMPLE_EVERY_S = 0.5
MAX_GAUGE_SAMPLES = 2000


def image_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "servoscope" / "images"


@dataclass(frozen=True, slots=True)
class Traffic:
    """What one window sends: ``mix`` (image set → share), at ``rate_per_s``, for ``duration_s``;
    ``slow_share`` of the requests from clients that read as ``reader`` does."""

    mix: tuple[tuple[str, float], ...]
    rate_per_s: float
    duration_s: float
    top_k: int = 5
    slow_share: float = 0.0
    slow_top_k: int = 1000
    reader: Reader = field(default_factory=Reader)

    def describe(self) -> str:
        mix = " + ".join(f"{100 * share:g}% {name}" for name, share in self.mix)
        text = f"{self.rate_per_s:.1f} req/s Poisson for {self.duration_s:g} s, images {mix}, top_k {self.top_k}"
        if self.slow_share:
            slow = f"{100 * self.slow_share:g}% of requests top_k {self.slow_top_k}"
            text += f"; {slow} from clients that {self.reader.describe()}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "mix": dict(self.mix),
            "rate_per_s": self.rate_per_s,
            "duration_s": self.duration_s,
            "top_k": self.top_k,
            "slow_share": self.slow_share,
            "slow_top_k": self.slow_top_k,
            "reader": self.reader.describe(),
            "description": self.describe(),
        }


def mixed_images(mix: tuple[tuple[str, float], ...], slots: int = 20) -> list[bytes]:
    """``slots`` images interleaved so that each set's share of them is its share of the mix."""
    sets = {name: image_set(name, image_cache()) for name, _ in mix}
    counts = {name: round(share * slots) for name, share in mix}
    out: list[bytes] = []
    used = dict.fromkeys(counts, 0)
    for i in range(slots):  # largest deficit first: shares spread evenly through the cycle
        name = max(counts, key=lambda n: counts[n] * (i + 1) / slots - used[n])
        out.append(sets[name][used[name] % len(sets[name])])
        used[name] += 1
    return out


def requests_for(endpoint: Endpoint, images: list[bytes], top_k: int) -> list[EncodedRequest]:
    path = f"{CLASSIFY_PATH}?top_k={top_k}"
    return [encode_request(endpoint, "POST", path, img, {"Content-Type": "image/jpeg"}) for img in images]


# ------------------------------------------------------------------ capacity and knee


@dataclass(frozen=True, slots=True)
class Capacity:
    max_rps: float
    knee_rps: float  # throughput where adding clients stopped paying (≥ 90% of the maximum)
    knee_concurrency: int
    points: tuple[dict[str, float], ...]  # per concurrency: throughput and latency
    placed_rps: float = 0.0  # the baseline the planner placed (drills/placement.py), when it did
    placement: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "max_rps": self.max_rps,
            "knee_rps": self.knee_rps,
            "knee_concurrency": self.knee_concurrency,
            "points": list(self.points),
            "placed_rps": self.placed_rps,
            "placement": self.placement,
        }


def knee(points: list[dict[str, float]]) -> tuple[float, int]:
    """The first concurrency whose throughput reaches 90% of the best: past it, more clients
    only queue (latency grows, throughput does not)."""
    best = max(p["throughput_rps"] for p in points)
    first = next(p for p in points if p["throughput_rps"] >= 0.9 * best)
    return first["throughput_rps"], int(first["concurrency"])


def measure_capacity(
    endpoint: Endpoint, images: list[bytes], concurrencies: tuple[int, ...], step_s: float
) -> Capacity:
    requests = requests_for(endpoint, images, 5)
    run(closed_loop(endpoint, requests, concurrencies[-1], max(0.5, step_s / 2)))  # warm-up, not counted
    points = []
    for c in concurrencies:
        s = summarize(run(closed_loop(endpoint, requests, c, step_s)))
        points.append(
            {"concurrency": float(c), "throughput_rps": s.throughput_rps, "p50_ms": s.p50_ms, "p95_ms": s.p95_ms}
        )
    knee_rps, knee_c = knee(points)
    return Capacity(max(p["throughput_rps"] for p in points), knee_rps, knee_c, tuple(points))


# ------------------------------------------------------------------ one window


@dataclass
class WindowLoad:
    samples: list[Sample]
    slow_samples: list[Sample]
    gauges: list[dict[str, float]]  # queue depths over time
    sender_late: int
    duration_s: float


async def _sample_gauges(endpoint: Endpoint, stop: asyncio.Event, out: list[dict[str, float]], start: float) -> None:
    """Poll /v1/stats for the queue depths until ``stop`` (bounded in count)."""
    request = encode_request(endpoint, "GET", "/v1/stats")
    conn = await Connection.open(endpoint)
    try:
        while not stop.is_set() and len(out) < MAX_GAUGE_SAMPLES:
            doc = json.loads((await conn.send(request, 10.0)).body)
            model = doc["models"][DEFAULT_MODEL]["queues"]
            out.append(
                {
                    "t_s": time.perf_counter() - start,
                    "preprocess_queue": doc["preprocess"]["queue"],
                    "preprocess_busy": doc["preprocess"]["busy"],
                    "batch_queue": model["batch_queue"],
                    "pending": model["pending"],
                    "batches_in_flight": model["batches_in_flight"],
                }
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
    finally:
        conn.close()


async def drive(endpoint: Endpoint, traffic: Traffic) -> WindowLoad:
    main_share = 1.0 - traffic.slow_share
    main = requests_for(endpoint, mixed_images(traffic.mix), traffic.top_k)
    slow = requests_for(endpoint, mixed_images(traffic.mix), traffic.slow_top_k)
    stop = asyncio.Event()
    gauges: list[dict[str, float]] = []
    start = time.perf_counter()
    sampler = asyncio.create_task(_sample_gauges(endpoint, stop, gauges, start))
    jobs: list[Any] = [
        open_loop(
            endpoint,
            main,
            poisson_arrivals(traffic.rate_per_s * main_share, traffic.duration_s, SEED),
            timeout_s=REQUEST_TIMEOUT_S,
        )
    ]
    if traffic.slow_share:
        arrivals = poisson_arrivals(traffic.rate_per_s * traffic.slow_share, traffic.duration_s, SEED + 1)
        jobs.append(slow_open_loop(endpoint, slow, arrivals, traffic.reader, REQUEST_TIMEOUT_S))
    try:
        results = await asyncio.gather(*jobs)
    finally:
        stop.set()
        await sampler
    result = results[0]
    return WindowLoad(
        result.samples, results[1] if traffic.slow_share else [], gauges, result.sender_late_count, traffic.duration_s
    )


def run_window(endpoint: Endpoint, traffic: Traffic) -> WindowLoad:
    return run(drive(endpoint, traffic))
