"""The doctor reading its evidence through PromQL from a real Prometheus on loopback, which
scrapes a healthy and a misconfigured servoscope: baseline at one instant, now at another.
Skipped only where the ``prometheus`` binary is not installed (as tests/test_prometheus.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from servoscope.doctor.promql import PromSource
from support import MODEL, ServerProcess, free_port, wait_for
from test_doctor_live import MISCONFIGURED, servoscope
from test_prometheus import DEADLINE_S, PROMETHEUS, Prometheus

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus binary is not on PATH")

RANGE = "15s"  # covers the whole healthy load; the degraded load outlasts it, so windows do not mix
# A fifth of what 2 cores serve: the healthy server stays far from its knee even with both cores taken
# by other processes (checked with two CPU hogs running beside it), so the baseline stays healthy.
RATE = "30"


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [{"job_name": "servoscope", "static_configs": [{"targets": targets}]}],
                }
            )
        )
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        prom = Prometheus(
            f"http://127.0.0.1:{port}", process, log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
        )
        started.append(prom)

        def ready() -> bool:
            assert process.poll() is None, prom.log_tail()
            try:
                return prom.client.get("/-/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "Prometheus ready", DEADLINE_S)
        return prom

    yield start
    for prom in started:
        prom.stop()


def load(server: ServerProcess, cache: Path, duration: str) -> None:
    port = server.url.rsplit(":", 1)[1]
    done = servoscope(
        "load",
        "--port",
        port,
        "--model",
        MODEL,
        "--cache-dir",
        str(cache),
        "--rate",
        RATE,
        "--duration",
        duration,
        "--arrivals",
        "constant",
        "--mix",
        "100%:320x240",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr + server.log_tail()


def scraped_instant(prom: Prometheus, server: ServerProcess) -> float:
    """Once Prometheus has scraped every request the server counted, the instant to read at."""
    expected = httpx.get(f"{server.url}/v1/stats", timeout=10).json()["models"][MODEL]["windows"]["5m"]["stages"][
        "total"
    ]["count"]
    instance = server.url.removeprefix("http://")
    expr = f'servoscope_stage_duration_seconds_count{{model="{MODEL}", stage="total", instance="{instance}"}}'
    scraped = lambda: [r for r in prom.query(expr) if float(r["value"][1]) >= expected]  # noqa: E731
    wait_for(scraped, "Prometheus scraped the last request", DEADLINE_S)
    return time.time()


def test_doctor_reads_evidence_through_promql(
    spawn_server: Callable[..., ServerProcess], prometheus_for: Callable[[list[str]], Prometheus], tmp_path: Path
) -> None:
    healthy = spawn_server("--models", MODEL, "--admission", "static")
    degraded = spawn_server("--models", MODEL, "--admission", "static", *MISCONFIGURED)
    prom = prometheus_for([s.url.removeprefix("http://") for s in (healthy, degraded)])
    wait_for(lambda: len([r for r in prom.query("up == 1")]) == 2, "both targets up", DEADLINE_S)
    cache = tmp_path / "images"

    load(healthy, cache, "8s")
    base_at = scraped_instant(prom, healthy)
    load(degraded, cache, "20s")
    now_at = scraped_instant(prom, degraded)

    source = PromSource(prom.url, RANGE)
    base = source.evidence(f"{base_at:.3f}")
    assert base.model == MODEL and base.total.count >= 100 and base.total.p95 > 0
    assert base.memory_total_bytes is None and base.batch_max_size is None
    assert base.instances >= 1 and base.cpu_count >= 1 and 0 < base.busy_ratio < 1

    done = servoscope(
        "doctor",
        "--prometheus",
        prom.url,
        "--at",
        f"{now_at:.3f}",
        "--baseline-at",
        f"{base_at:.3f}",
        "--range",
        RANGE,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["confirm"]["significant"] is True, doc["confirm"]
    assert doc["top"]["cause"] == "batching-misconfig", json.dumps(doc, indent=1)
    assert doc["attribute"]["shares"]["batch_wait"] >= 0.3


def test_doctor_names_a_prometheus_without_data(prometheus_for: Callable[[list[str]], Prometheus]) -> None:
    prom = prometheus_for([f"127.0.0.1:{free_port()}"])
    done = servoscope("doctor", "--prometheus", prom.url, "--baseline-at", "now")
    assert done.returncode == 2 and "no servoscope stage histograms" in done.stderr
