"""perf_analyzer — Triton's load generator, unchanged — drives servoscope over HTTP in concurrency
mode and over gRPC in request-rate mode, with JPEGs as its BYTES input; its "Server:" figures are
servoscope's own stage breakdown (the statistics extension). Bounded: a fixed count of requests
per window, three windows (perf_analyzer judges stability over the last three), each run killed after 30 s."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Callable

import httpx
import pytest

from servoscope.loadgen.perf_analyzer import DEFAULT_DIR, input_data
from support import MODEL, REPO_ROOT, Photo, ServerProcess, free_port, metric_value

PERF_ANALYZER = REPO_ROOT / DEFAULT_DIR / "perf_analyzer"
RUN_DEADLINE_S = 30
BOUNDS = ("--measurement-mode", "count_windows", "--measurement-request-count", "20", "--max-trials", "3",
          "--stability-percentage", "999")  # any three windows count as stable: the figures, not stability, are checked


def run(tmp_path: Path, name: str, *args: str) -> dict[str, str]:
    report = tmp_path / f"{name}.csv"
    done = subprocess.run(
        [str(PERF_ANALYZER), "-m", MODEL, *args, *BOUNDS, "-f", str(report)],
        capture_output=True, text=True, timeout=RUN_DEADLINE_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "compute infer" in done.stdout  # the "Server:" line, from servoscope's statistics
    (row,) = list(csv.DictReader(report.open()))
    return row


@pytest.mark.skipif(not PERF_ANALYZER.exists(), reason="perf_analyzer is not installed: make perf-analyzer")
def test_perf_analyzer_over_http_and_grpc(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo], tmp_path: Path
) -> None:
    grpc_port = free_port()
    srv = spawn_server("--models", MODEL, "--grpc-port", str(grpc_port))
    images = tmp_path / "images.json"
    images.write_text(json.dumps(input_data([photos[name].jpeg for name in ("coffee", "rocket", "chelsea")])))
    host = srv.url.removeprefix("http://")
    http = run(tmp_path, "http", "-u", host, "-i", "http", "--input-data", str(images), "--concurrency-range", "2:2")
    grpc = run(
        tmp_path, "grpc", "-u", f"127.0.0.1:{grpc_port}", "-i", "grpc", "--input-data", str(images),
        "--request-rate-range", "20",
    )
    for row in (http, grpc):
        assert float(row["Inferences/Second"]) > 0
        assert int(row["Server Compute Infer"]) > 0 and int(row["Server Compute Input"]) > 0
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        metrics = client.get("/metrics").text
        stats = client.get(f"/v2/models/{MODEL}/stats").json()["model_stats"][0]["inference_stats"]
    served = {p: metric_value(metrics, "servoscope_protocol_requests_total", model=MODEL, protocol=p, code="200") for p in ("http", "grpc")}
    assert served["http"] and served["http"] >= 40 and served["grpc"] and served["grpc"] >= 40
    assert stats["fail"]["count"] == 0 and stats["success"]["count"] == served["http"] + served["grpc"]
