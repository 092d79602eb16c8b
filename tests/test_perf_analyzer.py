"""perf_analyzer — Triton's load generator, unchanged — drives servoscope as the README says: over
HTTP in concurrency mode and over gRPC in request-rate mode, with JPEGs as its BYTES input; its
"Server:" figures are servoscope's own stage breakdown (the statistics extension).

The README's commands run as written, against this test's server, each perf_analyzer run bounded:
a fixed count of requests per window, three windows (perf_analyzer judges stability over the last
three), killed after 30 s."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from servoscope.loadgen.perf_analyzer import DEFAULT_DIR
from support import MODEL, REPO_ROOT, ServerProcess, free_port, metric_value

PERF_ANALYZER = REPO_ROOT / DEFAULT_DIR / "perf_analyzer"
RUN_DEADLINE_S = 30
BOUNDS = "--measurement-mode count_windows --measurement-request-count 10 --max-trials 3 --stability-percentage 999"


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## gRPC, Triton's extensions and perf_analyzer", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under the perf_analyzer section"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("make ")]


def run(command: str, cwd: Path) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.skipif(not PERF_ANALYZER.exists(), reason="perf_analyzer is not installed: make perf-analyzer")
def test_readme_perf_analyzer_commands(spawn_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    grpc_port = free_port()
    srv = spawn_server("--models", MODEL, "--grpc-port", str(grpc_port))
    reports = []
    for command in readme_commands():
        command = command.replace("127.0.0.1:8000", srv.url.removeprefix("http://"))
        command = command.replace("127.0.0.1:8001", f"127.0.0.1:{grpc_port}")
        command = re.sub(r"^(\.venv/bin/)?python ", f"{sys.executable} ", command)
        if command.startswith(".tools/"):
            reports.append(tmp_path / f"report-{len(reports)}.csv")
            command = f"{REPO_ROOT}/{command} {BOUNDS} -f {reports[-1]}"
        out = run(command, tmp_path)
        if reports and command.endswith(str(reports[-1])):
            assert "compute infer" in out  # the "Server:" line, from servoscope's statistics
    assert len(reports) == 2
    for report in reports:
        rows = list(csv.DictReader(report.open()))
        assert rows and all(float(row["Inferences/Second"]) > 0 for row in rows)
        assert all(int(row["Server Compute Infer"]) > 0 and int(row["Server Compute Input"]) > 0 for row in rows)
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        metrics = client.get("/metrics").text
        stats = client.get(f"/v2/models/{MODEL}/stats").json()["model_stats"][0]["inference_stats"]
    served = {
        p: metric_value(metrics, "servoscope_protocol_requests_total", model=MODEL, protocol=p, code="200") or 0
        for p in ("http", "grpc")
    }
    assert served["http"] >= 10 and served["grpc"] >= 10
    assert stats["fail"]["count"] == 0 and stats["success"]["count"] == served["http"] + served["grpc"]
