"""The protocols side by side at the same load: HTTP/JSON, HTTP/binary and gRPC — and perf_analyzer
beside servoscope's own load generator, each driving the same server at the same rate.

    python bench/protocols.py                  # ~1 min: 8 s per row at 15 req/s
    python bench/protocols.py --duration 3     # a smoke run, ~30 s

One `servoscope serve` (HTTP and gRPC, admission static) takes, one row after another, a
constant-rate open-loop load of the same small JPEGs (``--rate`` req/s for ``--duration`` s):

  http-json     servoscope.loadgen: POST /v2/models/{m}/infer, the image base64-encoded in JSON
  http-binary   servoscope.loadgen: the same in Triton's binary tensor data extension
  grpc          grpc.aio, here: ModelInfer with raw_input_contents, on the same schedule
  pa-http       perf_analyzer -i http --request-rate-range R (HTTP/binary): compare with http-binary
  pa-grpc       perf_analyzer -i grpc --request-rate-range R: compare with grpc

Per row: answered per second (the server's own count: its statistics' success count over the
row), the client's P50 and P95 (servoscope's rows from each request's scheduled send time;
perf_analyzer's from its own report), and the server's CPU milliseconds per answered request (its
process's CPU time over the row). Cores every other process took meanwhile are printed too — the
load generator's own (this process, or perf_analyzer) among them: a row measured beside a busy
neighbour is not comparable. perf_analyzer rows need `make perf-analyzer`.
Results also go to bench/results/protocols.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx

from serve import RESULTS, ROOT, free_port, progress, server, servoscope_argv
from servoscope.loadgen import constant_arrivals, encode_request, open_loop, run
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.images import image_set
from servoscope.loadgen.perf_analyzer import DEFAULT_DIR, input_data
from servoscope.loadgen.schedule import percentile
from servoscope.loadgen.targets import v2_body
from servoscope.server.protos import grpc_service_pb2 as pb

MODEL = "efficientnet_lite0"
INFER = f"/v2/models/{MODEL}/infer"
PERF_ANALYZER = ROOT / DEFAULT_DIR / "perf_analyzer"
Measure = Callable[[], tuple[float, float]]  # runs the load; → (P50, P95) in ms


def json_body(image: bytes) -> bytes:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
    return json.dumps({"inputs": [tensor]}).encode()


def loadgen(endpoint: Any, images: list[bytes], binary: bool, rate: float, duration_s: float) -> Measure:
    requests = []
    for image in images:
        if binary:
            body, head_length = v2_body(image)
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head_length)}
        else:
            body, headers = json_body(image), {"Content-Type": "application/json"}
        requests.append(encode_request(endpoint, "POST", INFER, body, headers))

    def measure() -> tuple[float, float]:
        result = run(open_loop(endpoint, requests, constant_arrivals(rate, duration_s)))
        ok = result.latencies()
        return 1000 * percentile(ok, 50), 1000 * percentile(ok, 95)

    return measure


async def grpc_open_loop(address: str, images: list[bytes], rate: float, duration_s: float) -> list[float]:
    """ModelInfer on a constant schedule; latencies (s) of the answered, from their scheduled times."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            pb.ModelInferRequest.SerializeToString,
            pb.ModelInferResponse.FromString,
        )

        async def one(i: int, due: float) -> None:
            request = pb.ModelInferRequest(model_name=MODEL)
            request.inputs.add(name="image", datatype="BYTES", shape=[1])
            image = images[i % len(images)]
            request.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
            try:
                await call(request, timeout=30)
                latencies.append(time.perf_counter() - due)
            except grpc.aio.AioRpcError:
                pass

        start = time.perf_counter()
        tasks = []
        for i, offset in enumerate(constant_arrivals(rate, duration_s)):
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, start + offset)))
        await asyncio.gather(*tasks)
    return latencies


def grpc_row(address: str, images: list[bytes], rate: float, duration_s: float) -> Measure:
    def measure() -> tuple[float, float]:
        ok = asyncio.run(grpc_open_loop(address, images, rate, duration_s))
        return 1000 * percentile(ok, 50), 1000 * percentile(ok, 95)

    return measure


def perf_analyzer(protocol: str, url: str, data: Path, rate: float, duration_s: float) -> Measure:
    def measure() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.csv"
            window_ms = str(int(1000 * duration_s / 3))  # three windows: what it judges stability by
            subprocess.run(
                [
                    str(PERF_ANALYZER),
                    "-m",
                    MODEL,
                    "-u",
                    url,
                    "-i",
                    protocol,
                    "--input-data",
                    str(data),
                    "--request-rate-range",
                    f"{rate:g}",
                    "--measurement-interval",
                    window_ms,
                    "--max-trials",
                    "3",
                    "--stability-percentage",
                    "999",
                    "-f",
                    str(report),
                ],
                check=True,
                capture_output=True,
                timeout=60 + 3 * duration_s,
            )
            (row,) = list(csv.DictReader(report.open()))
        return int(row["p50 latency"]) / 1000, int(row["p95 latency"]) / 1000

    return measure


def served(http: httpx.Client) -> int:
    stats = http.get(f"/v2/models/{MODEL}/stats").json()["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


def row(name: str, measure: Measure, http: httpx.Client, pid: int) -> dict[str, Any]:
    before, meter, started = served(http), CpuMeter([pid]), time.perf_counter()
    meter.start()
    p50_ms, p95_ms = measure()
    cpu, wall_s = meter.stop(), time.perf_counter() - started
    answered = served(http) - before
    figures = {
        "row": name,
        "answered_per_s": answered / wall_s,
        "p50_ms": p50_ms,
        "p95_ms": p95_ms,
        "server_cpu_ms_per_request": 1000 * cpu.ours_cores * wall_s / max(1, answered),
        "others_cores": cpu.others_cores,
    }
    progress(f"  {name}: {answered} answered, P95 {p95_ms:.1f} ms, {cpu.note()}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second in every row (default 15)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per row (default 8)")
    args = parser.parse_args()
    if not (1 <= args.duration <= 60 and 0 < args.rate <= 500):
        parser.error("--duration must be 1..60 s and --rate 0..500 req/s")
    images = image_set("small", RESULTS / "images")[:8]
    grpc_port = free_port()
    argv = [*servoscope_argv(), "--grpc-port", str(grpc_port)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, server("servoscope", argv, RESULTS / "protocols.log") as (endpoint, pid):
        data = Path(tmp) / "images.json"
        data.write_text(json.dumps(input_data(images)))
        grpc_address = f"127.0.0.1:{grpc_port}"
        plan: list[tuple[str, Measure]] = [
            ("http-json", loadgen(endpoint, images, False, args.rate, args.duration)),
            ("http-binary", loadgen(endpoint, images, True, args.rate, args.duration)),
            ("grpc", grpc_row(grpc_address, images, args.rate, args.duration)),
        ]
        if PERF_ANALYZER.exists():
            http_url = f"127.0.0.1:{endpoint.port}"
            plan += [
                ("pa-http", perf_analyzer("http", http_url, data, args.rate, args.duration)),
                ("pa-grpc", perf_analyzer("grpc", grpc_address, data, args.rate, args.duration)),
            ]
        else:
            progress(f"  perf_analyzer rows left out: {PERF_ANALYZER} is missing (make perf-analyzer)")
        with httpx.Client(base_url=f"http://127.0.0.1:{endpoint.port}", timeout=10) as http:
            rows = [row(name, measure, http, pid) for name, measure in plan]
    print(f"\n{args.rate:g} req/s offered in every row, {args.duration:g} s each, small JPEGs")
    print(f"{'row':<12} {'answered/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'server cpu ms/req':>18} {'others cores':>13}")
    for r in rows:
        print(
            f"{r['row']:<12} {r['answered_per_s']:10.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['server_cpu_ms_per_request']:18.1f} {r['others_cores']:13.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"rate": args.rate, "duration_s": args.duration, "rows": rows}
    (RESULTS / "protocols.json").write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
