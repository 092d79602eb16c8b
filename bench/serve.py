"""Serving benchmark: servoscope against the offline limit and a naive server, in one run.

For each image set (~320×240 JPEGs, 4032×3024 phone photos) it measures, side by side:

  offline    decode+preprocess+inference in a plain loop, best batch size, all cores, no HTTP
  service    `servoscope serve` saturation over loopback HTTP, closed loop, best concurrency
  naive      bench/naive_server.py saturation, measured the same way
  latency    servoscope unloaded (sequential) P50, and P50/P95 under open-loop Poisson load
             at 70% of its saturation, from each request's scheduled send time (and P95 at the
             same rate with evenly spaced arrivals, for comparison)

    python bench/serve.py              # ~5 minutes
    python bench/serve.py --quick      # ~1.5 minutes, shorter windows

Figures go to stdout (progress, then a table) and to bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from servoscope.loadgen import (
    Connection,
    EncodedRequest,
    Endpoint,
    constant_arrivals,
    encode_request,
    open_loop,
    poisson_arrivals,
    run,
    sequential,
    summarize,
)
from servoscope.loadgen.capacity import best_closed_loop
from servoscope.loadgen.client import EXPECT_CONTINUE_BYTES
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.images import SETS, image_set
from servoscope.loadgen.schedule import LATE_S
from servoscope.models.repository import ModelEntry, find
from servoscope.pipeline.preprocess import PreprocessSpec
from servoscope.pipeline.runtime import OnnxModel
from servoscope.resources import available_cores
from servoscope.variants.offline import offline_rate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODEL = "efficientnet_lite0"
CLASSIFY_PATH = f"/v1/models/{MODEL}/classify"
READY_PATH = "/v2/health/ready"
BATCH_SIZES = (1, 4, 8, 16, 32)
CONCURRENCIES = (16, 64)
LOAD_FRACTION = 0.7
START_DEADLINE_S = 180.0
LATE_MS = 1000 * LATE_S


@dataclasses.dataclass(frozen=True, slots=True)
class Windows:
    """How long each measurement runs, seconds."""

    closed_s: float
    offline_s: float
    open_s: float
    warmup_s: float
    unloaded_s: float

    @classmethod
    def from_duration(cls, duration_s: float) -> Windows:
        return cls(duration_s, duration_s / 2, 2 * duration_s, max(1.0, duration_s / 4), max(2.0, duration_s / 2))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- offline limit


def offline_limit(entry: ModelEntry, images: list[bytes], duration_s: float) -> dict[str, Any]:
    """The best of batch sizes and of two thread layouts: one session using every core, or one
    single-threaded session per core (each fed by its own thread)."""
    cfg = entry.config
    spec = PreprocessSpec(cfg.input.size, cfg.input.resize, cfg.input.mean, cfg.input.std)
    cores = available_cores()
    layouts = {
        f"1x{cores}": [OnnxModel(entry.model_file, "cpu", cores, cfg.input.name, cfg.output.name)],
        f"{cores}x1": [OnnxModel(entry.model_file, "cpu", 1, cfg.input.name, cfg.output.name) for _ in range(cores)],
    }
    by_run: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    for layout, models in layouts.items():
        for batch_size in BATCH_SIZES:
            key = f"{layout} b{batch_size}"
            meter = CpuMeter([os.getpid()])
            meter.start()
            by_run[key] = offline_rate(models, images, spec, batch_size, duration_s)
            use = meter.stop()
            cpu[key] = use.to_json()
            progress(
                f"  offline {layout} sessions×threads, batch {batch_size:>2}: {by_run[key]:7.1f} img/s; {use.note()}"
            )
    best = max(by_run, key=lambda k: by_run[k])
    return {"images_per_s": by_run[best], "best": best, "by_run": by_run, "cpu": cpu}


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(endpoint: Endpoint, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    probe = encode_request(endpoint, "GET", READY_PATH)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before becoming ready")
        with contextlib.suppress(OSError, TimeoutError):
            conn = await Connection.open(endpoint, timeout_s=2.0)
            try:
                if (await conn.send(probe, timeout_s=5.0)).status == 200:
                    return
            finally:
                conn.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"server on port {endpoint.port} not ready within {deadline_s}s")


@contextlib.contextmanager
def server(name: str, argv: list[str], log_path: Path) -> Iterator[tuple[Endpoint, int]]:
    """Start a server subprocess on a free loopback port, wait until ready, always stop it."""
    port = free_port()
    endpoint = Endpoint("127.0.0.1", port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, stdout=log, stderr=log
        )
        try:
            started = time.perf_counter()
            run(wait_ready(endpoint, process, START_DEADLINE_S))
            progress(
                f"  {name} ready on 127.0.0.1:{port} after {time.perf_counter() - started:.1f}s (log {log_path.name})"
            )
            yield endpoint, process.pid
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# Capacity is the pipeline's: measured with admission control off, since closed-loop clients that
# retry at once after a 429 measure how fast they are refused (bench/overload.py measures admission).
CAPACITY_FLAGS = ("--admission", "static")


def servoscope_argv(extra: tuple[str, ...] = CAPACITY_FLAGS, model: str = MODEL) -> list[str]:
    return [
        sys.executable,
        "-m",
        "servoscope",
        "serve",
        "--grpc-port",
        "0",
        "--model-repository",
        str(ROOT / "models"),
        "--models",
        model,
        "--log-level",
        "warning",
        *extra,
    ]


def naive_argv(entry: ModelEntry) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "naive_server.py"), "--model-dir", str(entry.path)]


# ---------------------------------------------------------------- HTTP measurements


def classify_requests(
    endpoint: Endpoint, images: list[bytes], expect_continue_bytes: int | None = EXPECT_CONTINUE_BYTES
) -> list[EncodedRequest]:
    """One request per image; bodies of ``expect_continue_bytes`` or more wait for 100 Continue (None: never)."""
    jpeg = {"Content-Type": "image/jpeg"}
    return [encode_request(endpoint, "POST", CLASSIFY_PATH, img, jpeg, expect_continue_bytes) for img in images]


def saturation(endpoint: Endpoint, pid: int, images: list[bytes], windows: Windows, label: str) -> dict[str, Any]:
    """Closed loop at each concurrency, after a warm-up; the best req/s wins."""
    requests = classify_requests(endpoint, images)
    return best_closed_loop(
        endpoint, requests, CONCURRENCIES, windows.closed_s, windows.warmup_s, [pid], progress, label
    )


def latency_profile(
    endpoint: Endpoint, pid: int, images: list[bytes], saturation_rps: float, windows: Windows
) -> dict[str, Any]:
    requests = classify_requests(endpoint, images)
    unloaded = summarize(run(sequential(endpoint, requests, 200, windows.unloaded_s)))
    progress(f"  servoscope unloaded: p50 {unloaded.p50_ms:.1f} ms over {unloaded.requests} sequential requests")
    rate = LOAD_FRACTION * saturation_rps
    arrivals = poisson_arrivals(rate, windows.open_s, seed=7)
    meter = CpuMeter([os.getpid(), pid])
    meter.start()
    loaded = summarize(run(open_loop(endpoint, requests, arrivals)))
    use = meter.stop()
    progress(
        f"  servoscope open loop {rate:.1f}/s: p50 {loaded.p50_ms:.1f} ms, p95 {loaded.p95_ms:.1f} ms, "
        f"errors {loaded.errors}, sender >{LATE_MS:g} ms late {loaded.sender_late_count}/{loaded.requests} "
        f"(max {loaded.sender_max_late_ms:.1f} ms); {use.note()}; server stages ms {loaded.server_stage_mean_ms}"
    )
    # the same rate at even spacing (perf_analyzer's and wrk2's default schedule): queueing from
    # bursts removed, what is left is the service's own variance and its contention for the cores
    steady = summarize(run(open_loop(endpoint, requests, constant_arrivals(rate, windows.open_s))))
    progress(
        f"  servoscope constant-rate {rate:.1f}/s: p50 {steady.p50_ms:.1f} ms, p95 {steady.p95_ms:.1f} ms, errors "
        f"{steady.errors}"
    )
    return {
        "unloaded": unloaded.to_json(),
        "rate_per_s": rate,
        "loaded": {**loaded.to_json(), "cpu": use.to_json()},
        "loaded_constant": steady.to_json(),
    }


# ---------------------------------------------------------------- one image set


def bench_set(
    set_name: str, entry: ModelEntry, windows: Windows, serve_args: tuple[str, ...] = CAPACITY_FLAGS
) -> dict[str, Any]:
    images = image_set(set_name, RESULTS / "images")
    spec = SETS[set_name]
    mean_kb = sum(map(len, images)) / len(images) / 1024
    progress(f"{set_name}: {len(images)} JPEGs {spec.size[0]}x{spec.size[1]}, mean {mean_kb:.0f} KiB")
    offline = offline_limit(entry, images, windows.offline_s)
    with server("servoscope", servoscope_argv(serve_args), RESULTS / f"servoscope-{set_name}.log") as (endpoint, pid):
        service = saturation(endpoint, pid, images, windows, "servoscope")
        latency = latency_profile(endpoint, pid, images, service["requests_per_s"], windows)
    with server("naive", naive_argv(entry), RESULTS / f"naive-{set_name}.log") as (endpoint, pid):
        naive = saturation(endpoint, pid, images, windows, "naive")
    return {
        "images": {"count": len(images), "size": list(spec.size), "mean_bytes": int(mean_kb * 1024)},
        "offline": offline,
        "service": service,
        "naive": naive,
        "latency": latency,
        "ratios": ratios(offline, service, naive, latency),
    }


def queueing_floor(servers: int, load: float, requests: int = 200_000) -> float:
    """P95 sojourn / service time of an ideal M/D/c queue (Poisson arrivals, every request served
    in exactly the unloaded time by one of ``servers``): the best any service on this machine can
    reach at that load. A simulation, seeded: 2 servers at 70% give 2.98."""
    rng = np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(1.0 / (load * servers), requests))
    free = [0.0] * servers
    sojourn = np.empty(requests)
    for i, t in enumerate(arrivals):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + 1.0)
        sojourn[i] = start + 1.0 - t
    return float(np.percentile(sojourn, 95))


def ratios(
    offline: dict[str, Any], service: dict[str, Any], naive: dict[str, Any], latency: dict[str, Any]
) -> dict[str, float]:
    return {
        "service_over_offline": service["requests_per_s"] / offline["images_per_s"],
        "service_over_naive": service["requests_per_s"] / naive["requests_per_s"],
        "p95_loaded_over_unloaded_p50": latency["loaded"]["p95_ms"] / latency["unloaded"]["p50_ms"],
        "p95_constant_over_unloaded_p50": latency["loaded_constant"]["p95_ms"] / latency["unloaded"]["p50_ms"],
        "p95_floor_md_c": queueing_floor(available_cores(), LOAD_FRACTION),
    }


# ---------------------------------------------------------------- report


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows: list[tuple[str, ...]] = [("", *names)]

    def add(label: str, fmt: str, path: tuple[str, ...]) -> None:
        values = []
        for name in names:
            value: Any = results[name]
            for key in path:
                value = value[key]
            values.append(fmt.format(value))
        rows.append((label, *values))

    add("(a) offline limit, img/s", "{:.1f}", ("offline", "images_per_s"))
    add("    best layout and batch", "{}", ("offline", "best"))
    add("(b) servoscope saturation, req/s", "{:.1f}", ("service", "requests_per_s"))
    add("    best concurrency", "{}", ("service", "best_concurrency"))
    add("(c) naive saturation, req/s", "{:.1f}", ("naive", "requests_per_s"))
    add("    best concurrency", "{}", ("naive", "best_concurrency"))
    add("(d) unloaded latency P50, ms", "{:.1f}", ("latency", "unloaded", "p50_ms"))
    add("    open-loop rate (70% of b), req/s", "{:.1f}", ("latency", "rate_per_s"))
    add("    P50 at 70%, ms", "{:.1f}", ("latency", "loaded", "p50_ms"))
    add("    P95 at 70%, ms", "{:.1f}", ("latency", "loaded", "p95_ms"))
    add("    P95 at 70%, constant arrivals, ms", "{:.1f}", ("latency", "loaded_constant", "p95_ms"))
    add("service / offline   (target >= 0.85 small)", "{:.2f}", ("ratios", "service_over_offline"))
    add("service / naive     (target >= 2.5 phone)", "{:.2f}", ("ratios", "service_over_naive"))
    add("P95@70% / unloaded  (target <= 3)", "{:.2f}", ("ratios", "p95_loaded_over_unloaded_p50"))
    add("    the same, constant arrivals", "{:.2f}", ("ratios", "p95_constant_over_unloaded_p50"))
    add("    floor: ideal M/D/c, c = cores", "{:.2f}", ("ratios", "p95_floor_md_c"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (~1.5 minutes in all)")
    parser.add_argument("--duration", type=float, help="closed-loop window, seconds (default 8, quick 3)")
    parser.add_argument(
        "--sets", default="small,phone", help="image sets, comma-separated: small, medium (~640×480), phone"
    )
    parser.add_argument("--serve-args", default="", help="extra `servoscope serve` flags, e.g. '--instances 2'")
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 8.0)
    if not 0.5 <= duration <= 600:
        parser.error(f"--duration must be in [0.5, 600] seconds, got {duration}")
    windows = Windows.from_duration(duration)
    entry = find(ROOT / "models", MODEL)
    started = time.perf_counter()
    load_before = os.getloadavg()
    progress(f"servoscope serving bench: {available_cores()} cores, windows {windows}")
    serve_args = CAPACITY_FLAGS + tuple(shlex.split(args.serve_args))
    results = {name: bench_set(name, entry, windows, serve_args) for name in args.sets.split(",")}
    report = {
        "machine": {
            "cores": available_cores(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "windows_s": dataclasses.asdict(windows),
        "serve_args": list(serve_args),
        "elapsed_s": time.perf_counter() - started,
        "sets": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(report, indent=2))
    print()
    print(table(results))
    print(
        f"\n{report['elapsed_s']:.0f}s; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"figures in {RESULTS / 'serve.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
