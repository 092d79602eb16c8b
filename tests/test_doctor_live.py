"""The doctor against live services on loopback: ``servoscope snapshot`` saves a real server's
``/v1/stats``; ``servoscope doctor --url`` diagnoses a real, misconfigured server against it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from servoscope.doctor import evidence
from servoscope.telemetry.document import SystemMeans
from support import MODEL, REPO_ROOT, Photo, ServerProcess, classify, free_port

LOAD = ("--rate", "60", "--duration", "8s", "--arrivals", "constant", "--mix", "100%:320x240", "--quiet")
MISCONFIGURED = ("--max-queue-delay-ms", "200", "--max-batch-size", "64")
CLI_TIMEOUT_S = 120


def servoscope(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "servoscope", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def drive_load(server: ServerProcess, cache: Path) -> None:
    """The same bounded, paced load each time (open loop, 60 req/s for 8 s, small JPEGs)."""
    port = server.url.rsplit(":", 1)[1]
    done = servoscope("load", "--port", port, "--model", MODEL, "--cache-dir", str(cache), *LOAD)
    assert done.returncode == 0, done.stderr + server.log_tail()


def test_snapshot_saves_stats_with_url_and_time(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo], tmp_path: Path
) -> None:
    server = spawn_server("--models", MODEL)
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        for photo in photos.values():
            assert classify(client, photo.jpeg).status_code == 200
    out = tmp_path / "snap" / "now.json"
    done = servoscope("snapshot", "--url", server.url, "--model", MODEL, "-o", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["url"] == server.url and doc["model"] == MODEL
    assert doc["taken_at"].endswith("+00:00") and doc["time"] > 0
    assert list(doc["stats"]["models"]) == [MODEL]
    e = evidence.load(out)
    assert e.model == MODEL and e.total.count == len(photos)


def test_snapshot_names_what_is_wrong(spawn_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = spawn_server("--models", MODEL)
    out = tmp_path / "s.json"
    unknown = servoscope("snapshot", "--url", server.url, "--model", "nope", "-o", str(out))
    assert unknown.returncode == 2 and "'nope'" in unknown.stderr and MODEL in unknown.stderr
    down = servoscope("snapshot", "--url", f"http://127.0.0.1:{free_port()}", "-o", str(out))
    assert down.returncode == 1 and "cannot read" in down.stderr
    assert not out.exists()


def test_doctor_on_a_live_misconfigured_service(spawn_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    cache = tmp_path / "images"
    baseline = tmp_path / "baseline.json"
    healthy = spawn_server("--models", MODEL, "--admission", "static")
    drive_load(healthy, cache)
    done = servoscope("snapshot", "--url", healthy.url, "-o", str(baseline))
    assert done.returncode == 0, done.stderr
    healthy.stop()

    degraded = spawn_server("--models", MODEL, "--admission", "static", *MISCONFIGURED)
    drive_load(degraded, cache)
    report_md = tmp_path / "report" / "doctor.md"
    done = servoscope(
        "doctor", "--url", degraded.url, "--baseline", str(baseline), "--json", "--markdown", str(report_md)
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["confirm"]["significant"] is True, doc["confirm"]
    assert doc["top"]["cause"] == "batching-misconfig", json.dumps(doc, indent=1)
    assert "max_queue_delay" in doc["prescribe"][0]["action"]
    text = report_md.read_text()
    assert "batching-misconfig" in text and "## 4. Prescribe" in text and "doctor.png" in text
    assert report_md.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def means(system: dict[str, Any]) -> dict[str, Any]:
    """A window's system means, here taken from one sample."""
    return {name: system.get(name) for name in SystemMeans.model_fields}


def test_baseline_window_from_the_same_document(tmp_path: Path) -> None:
    """``--baseline-window before``: one document holds both windows (the last minute, and the minutes
    before it). Built here from a drill's two real snapshots, so no test waits minutes."""
    drill = REPO_ROOT / "tests" / "data" / "drills" / "batching-misconfig"
    base, now = (json.loads((drill / f).read_text()) for f in ("baseline.json", "degraded.json"))
    window = base["stats_window"]
    doc = now["stats"]
    for name, entry in doc["models"].items():
        entry["windows"] = {"1m": entry["windows"][window], "before": base["stats"]["models"][name]["windows"][window]}
    doc["windows_s"], doc["windows_ago_s"] = {"1m": 60.0, "before": 240.0}, {"1m": 0.0, "before": 60.0}
    lag = doc["event_loop_lag_s"][window], base["stats"]["event_loop_lag_s"][window]
    doc["event_loop_lag_s"] = {"1m": lag[0], "before": lag[1]}
    doc["system_means"] = {"1m": means(doc["system"]), "before": means(base["stats"]["system"])}
    snapshot = tmp_path / "one-document.json"
    snapshot.write_text(json.dumps(doc))

    done = servoscope("doctor", "--snapshot", str(snapshot), "--baseline-window", "before", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["top"]["cause"] == "batching-misconfig"
    same = servoscope("doctor", "--snapshot", str(snapshot), "--baseline-window", "1m")
    assert same.returncode == 2 and "current window too" in same.stderr
    missing = servoscope("doctor", "--snapshot", str(snapshot), "--baseline-window", "5m")
    assert missing.returncode == 2 and "window '5m' not in snapshot" in missing.stderr
