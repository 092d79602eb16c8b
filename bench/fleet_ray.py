"""servoscope on Ray Serve: what Ray's HTTP proxy costs, and throughput on 1 and 2 replicas against
the single process, measured side by side in one run on this machine.

1. Ingress CPU per request, for a request that does nothing: Ray Serve's HTTP proxy routing to a
   trivial deployment, against HAProxy routing to servoscope's own HTTP front in a Ray replica
   (``/v2/health/live``). CPU is summed over every process the bench started (Ray's, HAProxy,
   the replicas), not the load client.
2. Classification throughput (closed loop, chelsea as JPEG): ``servoscope serve`` alone, the Ray
   fleet (``servoscope.fleet.ray``) with 1 and with 2 replicas behind HAProxy, and the single process
   again (its two figures show how much the machine drifted during the run).

    python bench/fleet_ray.py                 # ~2 min: 8 s windows, 600 ingress requests
    python bench/fleet_ray.py --window 4 --requests 300
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported: a loopback cluster

import psutil
import ray
import skimage.data
from PIL import Image
from ray import serve

from servoscope.fleet.plan import FleetPlan, sized_to_cores
from servoscope.fleet.ray.fleet import FleetOptions, RayFleet
from servoscope.loadgen import Endpoint, encode_request, run, summarize
from servoscope.loadgen.schedule import closed_loop
from servoscope.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet_lite0"
CLASSIFY = f"/v1/models/{MODEL}/classify"
CONCURRENCY = 8
INGRESS_CONCURRENCY = 4
SLO_P95_MS = 60000.0  # admission never refuses here: the bench measures capacity, not the objective


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chelsea_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(out, "JPEG", quality=90)
    return out.getvalue()


def tree_cpu_s() -> dict[int, float]:
    """CPU seconds so far of every process this bench started, by pid."""
    seconds = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def closed(
    endpoint: Endpoint,
    method: str,
    path: str,
    body: bytes,
    concurrency: int,
    window_s: float,
    max_requests: int | None = None,
) -> Any:
    headers = {"Content-Type": "image/jpeg"} if body else {}
    requests = [encode_request(endpoint, method, path, body, headers)]
    extra = {"max_requests": max_requests} if max_requests else {}
    return summarize(run(closed_loop(endpoint, requests, concurrency, window_s, **extra)))


def ingress_cpu(endpoint: Endpoint, path: str, requests: int) -> dict[str, float]:
    """CPU ms per request over ``requests`` trivial requests (after a warm-up of 50)."""
    closed(endpoint, "GET", path, b"", INGRESS_CONCURRENCY, 30.0, 50)
    before = tree_cpu_s()
    summary = closed(endpoint, "GET", path, b"", INGRESS_CONCURRENCY, 60.0, requests)
    after = tree_cpu_s()
    used_s = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    done = summary.requests - summary.errors
    return {"cpu_ms_per_request": 1000 * used_s / max(done, 1), "requests": done, "errors": summary.errors}


def throughput(endpoint: Endpoint, body: bytes, window_s: float) -> dict[str, float]:
    closed(endpoint, "POST", CLASSIFY, body, CONCURRENCY, min(3.0, window_s))  # warm-up
    summary = closed(endpoint, "POST", CLASSIFY, body, CONCURRENCY, window_s)
    return {"requests_per_s": summary.throughput_rps, "p50_ms": summary.p50_ms, "errors": summary.errors}


def single_process(body: bytes, window_s: float) -> dict[str, float]:
    port = free_port()
    sized = sized_to_cores(fleet_settings(), psutil.cpu_count() or 1)  # threads as a replica with every core has
    overrides = sized.model_overrides
    threads = [
        "--preprocess-workers",
        str(sized.preprocess_workers),
        "--instances",
        str(overrides.instances),
        "--intra-op-threads",
        str(overrides.intra_op_threads),
    ]
    argv = [
        sys.executable,
        "-m",
        "servoscope",
        "serve",
        "--port",
        str(port),
        "--grpc-port",
        "0",
        "--model-repository",
        str(ROOT / "models"),
        "--models",
        MODEL,
        "--slo-p95-ms",
        str(SLO_P95_MS),
        "--log-level",
        "warning",
        *threads,
    ]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        endpoint = Endpoint("127.0.0.1", port)
        wait_ready(endpoint)
        return throughput(endpoint, body, window_s)
    finally:
        server.terminate()
        server.wait(30)


def wait_ready(endpoint: Endpoint, deadline_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{endpoint.host}:{endpoint.port}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{endpoint} not ready within {deadline_s} s")


@serve.deployment
class Echo:
    """The cheapest request Ray's proxy can route: answered at once by a trivial deployment."""

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("ok")  # with a Content-Length: a bare str is sent chunked


def ray_proxy_cost(requests: int) -> dict[str, float]:
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    try:
        return ingress_cpu(Endpoint("127.0.0.1", port), "/echo", requests)
    finally:
        serve.shutdown()


def fleet_settings() -> Settings:
    return load_settings(None, model_repository=ROOT / "models", models=(MODEL,), slo_p95_ms=SLO_P95_MS)


def ray_fleet(replicas: int, body: bytes, window_s: float, ingress_requests: int) -> Iterator[dict[str, float]]:
    settings = fleet_settings()
    cores = psutil.cpu_count() or 1  # the machine shared out: each replica sized to its share, as one process is to all
    share = max(1, cores // replicas)
    plan = FleetPlan.model_validate({"replicas": {"min": replicas, "max": replicas}, "cpu_cores": share})
    fleet = RayFleet(settings, plan, FleetOptions(port=free_port()))
    fleet.start()
    try:
        deadline = time.monotonic() + 60
        while len(fleet.balancer.served()) < replicas and time.monotonic() < deadline:
            time.sleep(0.2)
        host, port = fleet.balancer.address.rsplit(":", 1)
        endpoint = Endpoint(host, int(port))
        if ingress_requests:
            yield ingress_cpu(endpoint, "/v2/health/live", ingress_requests)
        yield throughput(endpoint, body, window_s)
    finally:
        fleet.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=8.0, help="seconds of each throughput window")
    parser.add_argument("--requests", type=int, default=600, help="trivial requests per ingress measurement")
    args = parser.parse_args(argv)
    body = chelsea_jpeg()
    load_before = os.getloadavg()[0]
    first = single_process(body, args.window)
    ray.init(include_dashboard=False, namespace="servoscope-bench", log_to_driver=False)
    try:
        proxy = ray_proxy_cost(args.requests)
        front, one = ray_fleet(1, body, args.window, args.requests)
        (two,) = ray_fleet(2, body, args.window, 0)
    finally:
        ray.shutdown()
    last = single_process(body, args.window)  # before and after the Ray runs: the machine's drift shows
    single = {k: (first[k] + last[k]) / 2 for k in first}
    load_after = os.getloadavg()[0]
    print(
        f"\nmachine: {psutil.cpu_count()} cores; 1-min load average {load_before:.1f} before, {load_after:.1f} after "
        "(figures from a busy machine are ratios only)"
    )
    print("\ningress, CPU per request that does nothing (every process of the path):")
    print(
        f"  Ray Serve HTTP proxy → trivial deployment:     {proxy['cpu_ms_per_request']:6.2f} ms  "
        f"({proxy['requests']:.0f} requests, {proxy['errors']:.0f} errors)"
    )
    print(
        f"  HAProxy → servoscope's front in a Ray replica:  {front['cpu_ms_per_request']:6.2f} ms  "
        f"({front['requests']:.0f} requests, {front['errors']:.0f} errors)"
    )
    print(f"  ratio Ray proxy / HAProxy + own front: {proxy['cpu_ms_per_request'] / front['cpu_ms_per_request']:.1f}×")
    print(f"\nclassification throughput, closed loop C={CONCURRENCY}, {args.window:g} s windows:")
    print(
        f"  servoscope serve, first and last run: {first['requests_per_s']:.1f} and {last['requests_per_s']:.1f} req/s"
    )
    for name, figure in (
        ("servoscope serve (mean of both)", single),
        ("Ray fleet, 1 replica", one),
        ("Ray fleet, 2 replicas", two),
    ):
        print(
            f"  {name:32s} {figure['requests_per_s']:7.1f} req/s  p50 {figure['p50_ms']:6.1f} ms  "
            f"errors {figure['errors']:.0f}  ({figure['requests_per_s'] / single['requests_per_s']:.2f}× single)"
        )
    print(f"  2 replicas / 1 replica: {two['requests_per_s'] / one['requests_per_s']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
