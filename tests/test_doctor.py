"""The doctor on recorded drill snapshots: pure and fast (no servers).

Each drill's baseline/degraded pair was produced by a real drill run; the doctor reads only the
``/v1/stats`` document inside each snapshot, never the drill's own labels.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from servoscope.doctor import evidence, report
from servoscope.doctor.rules import Diagnosis, diagnose
from support import REPO_ROOT

DRILLS = REPO_ROOT / "tests" / "data" / "drills"

# Drill scenario → the root-cause class the doctor must name first.
EXPECTED: dict[str, str] = {
    "traffic-growth": "traffic-growth",
    # a second traffic-growth run: +15 % offered, only +6 % answered, busy ratio flat (0.75 → 0.76) —
    # the extra load went into larger batches (1.7 → 2.3) and a backlog
    "traffic-growth-batched": "traffic-growth",
    "image-drift": "input-drift",
    "cpu-contention": "cpu-contention",
    "batching-misconfig": "batching-misconfig",
    "slow-inference": "slow-inference",
    "preprocess-starvation": "preprocess-starvation",
    "memory-pressure": "memory-pressure",
    # The server's stages (respond included: it ends when the answer is handed to the socket) do not
    # move; only delivery, until the client acknowledged the answer, does.
    "slow-clients": "slow-clients",
}


def run_doctor(scenario: str, baseline: str = "baseline.json", current: str = "degraded.json") -> Diagnosis:
    base = evidence.load(DRILLS / scenario / baseline)
    now = evidence.load(DRILLS / scenario / current)
    return diagnose(base, now)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_top_finding_names_the_drills_cause(scenario: str) -> None:
    d = run_doctor(scenario)
    assert d.top.cause == EXPECTED[scenario], report.to_text(d)
    assert 0 < d.top.confidence <= 1
    assert d.top.evidence and d.top.fixes


def test_slow_clients_are_confirmed_by_delivery_alone() -> None:
    d = run_doctor("slow-clients")
    assert d.confirm.significant and "after the server's stages" in d.confirm.verdict
    assert d.attribution.carrier == "delivery"


def test_without_delivery_evidence_slow_clients_are_beyond_the_servers_sight() -> None:
    """Snapshots from a server that did not measure delivery: no server-side regression, and the
    report says where to look instead of guessing."""
    base = evidence.load(DRILLS / "slow-clients" / "baseline.json")
    now = dataclasses.replace(evidence.load(DRILLS / "slow-clients" / "degraded.json"), delivery=base.delivery)
    d = diagnose(base, now)
    assert d.top.cause == "no-regression"
    assert "beyond what the server can see" in report.to_text(d)


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_baseline_against_itself_is_no_regression(scenario: str) -> None:
    d = run_doctor(scenario, current="baseline.json")
    assert d.top.cause == "no-regression"
    assert "no significant regression" in d.confirm.verdict


def test_attribution_names_the_carrier_and_shares_sum_to_one() -> None:
    d = run_doctor("traffic-growth")
    assert d.attribution.carrier == "batch_wait"
    assert sum(d.attribution.shares.values()) == pytest.approx(1.0)


def test_prescriptions_carry_expected_effects() -> None:
    assert "busy 0.84 → ~0.56" in run_doctor("traffic-growth").top.fixes[0].action
    assert "max_queue_delay from ~200 ms" in run_doctor("batching-misconfig").top.fixes[0].action
    assert any(f.scope == "model" and "sign-off" in f.action for f in run_doctor("slow-inference").top.fixes)


def test_reads_a_bare_stats_document(tmp_path: Path) -> None:
    drill = json.loads((DRILLS / "traffic-growth" / "degraded.json").read_text())
    bare = tmp_path / "stats.json"
    bare.write_text(json.dumps(drill["stats"]))
    e = evidence.load(bare, window="1m")
    assert (
        e.model == "efficientnet_lite0"
        and e.total.count == drill["stats"]["models"][e.model]["windows"]["1m"]["stages"]["total"]["count"]
    )


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(evidence.EvidenceError, match="not in snapshot"):
        evidence.load(DRILLS / "traffic-growth" / "degraded.json", model="nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    pair = DRILLS / "batching-misconfig"
    cmd = [
        sys.executable,
        "-m",
        "servoscope",
        "doctor",
        "--snapshot",
        str(pair / "degraded.json"),
        "--baseline",
        str(pair / "baseline.json"),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_cli_json_has_every_step() -> None:
    out = _cli("--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {"confirm", "attribute", "explain", "prescribe"} <= doc.keys()
    assert doc["explain"][0]["cause"] == "batching-misconfig"
    assert doc["confirm"]["significant"] is True


def test_cli_text_report_shows_the_method() -> None:
    out = _cli("--window", "1m")
    assert out.returncode == 0, out.stderr
    for step in ("1. Confirm", "2. Attribute", "3. Explain", "4. Prescribe"):
        assert step in out.stdout


def test_more_traffic_filling_the_preprocess_queue_is_traffic_growth_not_starvation() -> None:
    """With as many workers as before, a queue that grew with the traffic is growth past the knee."""
    base = evidence.load(DRILLS / "traffic-growth" / "baseline.json")
    now = evidence.load(DRILLS / "traffic-growth" / "degraded.json")
    waited = now.stages["preprocess_wait"]
    # the preprocess queue carries the rise
    stages = {**now.stages, "preprocess_wait": dataclasses.replace(waited, p95=waited.p95 + 0.2)}
    d = diagnose(base, dataclasses.replace(now, stages=stages))
    assert d.attribution.carrier == "preprocess_wait"
    assert d.top.cause == "traffic-growth", report.to_text(d)


def test_demand_counted_on_arrival_shows_growth_that_answers_lag() -> None:
    """+15 % arrivals while a backlog builds: answered rose 2 % only. The arrivals say traffic grew;
    without them (a service that predates the count) the same windows are not called growth."""
    base = evidence.load(DRILLS / "traffic-growth-batched" / "baseline.json")
    now = evidence.load(DRILLS / "traffic-growth-batched" / "degraded.json")
    now = dataclasses.replace(
        now, answered_per_s=base.answered_per_s * 1.02, batch_mean_size=base.batch_mean_size * 1.3
    )
    counted = diagnose(dataclasses.replace(base, arrived_per_s=134.0), dataclasses.replace(now, arrived_per_s=154.0))
    assert counted.top.cause == "traffic-growth", report.to_text(counted)
    assert "traffic 134 → 154 req/s (×1.15)" in counted.top.evidence[0]
    assert diagnose(base, now).top.cause != "traffic-growth"


def test_a_p95_rise_within_its_sampling_error_is_no_regression() -> None:
    """+12 % on total P95 is a regression on 5000 samples, but within the noise of 150."""
    base = evidence.load(DRILLS / "traffic-growth" / "baseline.json")

    def window(count: float, p95_factor: float) -> evidence.Evidence:
        t = base.total
        total = dataclasses.replace(t, count=count, p95=t.p95 * p95_factor)
        return dataclasses.replace(base, stages={**base.stages, "total": total})

    assert not diagnose(window(150, 1.0), window(150, 1.12)).confirm.significant
    assert diagnose(window(5000, 1.0), window(5000, 1.12)).confirm.significant


def _on_gpu(e: evidence.Evidence, util: float, clock: float, reasons: tuple[str, ...] = ()) -> evidence.Evidence:
    """FAKE GPU readings (this machine has no GPU) on a real drill's evidence."""
    return dataclasses.replace(e, gpu_utilization_ratio=util, gpu_clock_ratio=clock, gpu_throttle_reasons=reasons)


@pytest.mark.parametrize(
    ("util", "clock", "reasons", "words"),
    [
        (0.97, 0.98, (), "the GPU is saturated (97% busy)"),
        (0.55, 0.55, ("hw_thermal_slowdown",), "the GPU is throttled"),
        (0.70, 0.62, (), "the GPU is throttled"),  # clocks held down without a reason NVML names
        (0.30, 0.99, (), "the GPU waits (30% busy)"),
    ],
)
def test_slow_inference_on_a_gpu_tells_saturated_throttled_and_waiting_apart(
    util: float, clock: float, reasons: tuple[str, ...], words: str
) -> None:
    base = _on_gpu(evidence.load(DRILLS / "slow-inference" / "baseline.json"), 0.60, 0.99)
    now = _on_gpu(evidence.load(DRILLS / "slow-inference" / "degraded.json"), util, clock, reasons)
    d = diagnose(base, now)
    assert d.top.cause == "slow-inference" and words in d.top.summary, report.to_text(d)
    assert f"GPU busy 60% → {util:.0%}" in "\n".join(d.top.evidence)
    assert d.top.fixes[0].scope == "infrastructure"


def test_slow_inference_without_a_gpu_points_at_the_cores() -> None:
    d = run_doctor("slow-inference")
    assert "no GPU" in d.top.summary and "no GPU reported" in "\n".join(d.top.evidence)


def test_gpu_evidence_from_window_means_and_the_latest_reading() -> None:
    """A saved (version-less) /v1/stats document with a FAKE GPU reading: utilization and clock share
    from the window's means where kept, else from the reading; slowing throttle reasons from the
    reading. Its percents arrive as ratios, through the migration."""
    doc = json.loads((DRILLS / "slow-inference" / "degraded.json").read_text())["stats"]
    doc["gpu"] = {
        "available": True,
        "reason": None,
        "driver_version": "fake",
        "devices": [
            {
                "index": 0,
                "utilization_gpu_percent": 20,
                "sm_clock_mhz": 1980,
                "sm_clock_max_mhz": 1980,
                "throttle_reasons": ["gpu_idle"],
            },
            {
                "index": 1,
                "utilization_gpu_percent": 90,
                "sm_clock_mhz": 990,
                "sm_clock_max_mhz": 1980,
                "throttle_reasons": ["sw_power_cap", "applications_clocks_setting"],
            },
        ],
    }
    latest = evidence.from_document(doc, window="1m")
    assert (latest.gpu_utilization_ratio, latest.gpu_clock_ratio, latest.gpu_throttle_reasons) == (
        0.9,
        0.5,
        ("sw_power_cap",),
    )
    doc["system_means"] = {"1m": {"gpu_utilization_percent": 75.5, "gpu_sm_clock_ratio": 0.7}}
    means = evidence.from_document(doc, window="1m")
    assert (means.gpu_utilization_ratio, means.gpu_clock_ratio) == (0.755, 0.7)
    assert (
        evidence.from_document(
            json.loads((DRILLS / "slow-inference" / "degraded.json").read_text())
        ).gpu_utilization_ratio
        is None
    )


def test_a_heavy_baseline_tail_does_not_hide_a_shift_of_the_whole_distribution() -> None:
    """As seen in a short image-drift drill: a baseline whose P99 is twice its P95 widens the P95's
    error past the new P95 (×1.40), but the median moved ×2.8, far beyond its own error."""

    def window(p50: float, p95: float, p99: float) -> evidence.Evidence:
        e = evidence.load(DRILLS / "image-drift" / "baseline.json")
        return dataclasses.replace(e, stages={**e.stages, "total": evidence.Percentiles(532, p50, p95, p99)})

    base = window(0.0137, 0.0721, 0.1451)
    assert diagnose(base, window(0.0388, 0.1013, 0.1394)).confirm.significant
    assert "the median with it" in diagnose(base, window(0.0388, 0.1013, 0.1394)).confirm.verdict
    assert not diagnose(
        base, window(0.0140, 0.1013, 0.1394)
    ).confirm.significant  # the median stayed: within the tail's noise
