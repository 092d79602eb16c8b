"""The doctor, round 2, on saved snapshots (tests/data/doctor/, derived from real drill snapshots by
``make_snapshots.py``): every snapshot shape, evidence of change, availability, slow uploads, warnings
below the alarm, the planner's counterfactual and predicted effects, and ``--verify``. Pure and fast."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servoscope.doctor import changes, counterfactual, evidence, report
from servoscope.doctor.rules import Diagnosis, diagnose
from servoscope.doctor.verify import verify
from support import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data" / "doctor"
DRILLS = REPO_ROOT / "tests" / "data" / "drills"
MAX_DIAGNOSIS_CPU_S = 5.0


def pair(scenario: str, root: Path = DATA, model: str | None = None) -> tuple[evidence.Evidence, evidence.Evidence]:
    raw = [json.loads((root / scenario / f"{w}.json").read_text()) for w in ("baseline", "degraded")]
    return evidence.pair(raw[0], raw[1], model)


def run(scenario: str, root: Path = DATA) -> Diagnosis:
    return diagnose(*pair(scenario, root))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "servoscope", "doctor", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)


def test_several_models_idle_ones_and_models_coming_and_going_never_raise() -> None:
    """INT8 and FP16 variants served and idle; FP16 removed and another model added between the windows."""
    out = cli(
        "--snapshot",
        str(DATA / "several-models" / "degraded.json"),
        "--baseline",
        str(DATA / "several-models" / "baseline.json"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["model"] == "efficientnet_lite0" and doc["top"]["cause"] == "cpu-contention"
    said = [c["said"] for c in doc["changes"]]
    assert any(s.startswith("models served") and "resnet_int8" in s for s in said)
    idle = diagnose(*pair("several-models", model="efficientnet_lite0_int8"))
    assert idle.top.cause == "no-regression" and "too few samples (0 vs 0" in idle.confirm.verdict


@pytest.mark.parametrize(
    ("model", "missing_from"), [("resnet_int8", "baseline"), ("efficientnet_lite0_fp16", "current")]
)
def test_a_model_in_one_window_only_is_a_clear_error(model: str, missing_from: str) -> None:
    out = cli(
        "--snapshot",
        str(DATA / "several-models" / "degraded.json"),
        "--baseline",
        str(DATA / "several-models" / "baseline.json"),
        "--model",
        model,
    )
    assert out.returncode == 2 and f"not in the {missing_from} snapshot" in out.stderr and "Traceback" not in out.stderr


def test_a_capacity_change_is_the_prime_suspect_and_its_revert_is_predicted() -> None:
    d = run("capacity-change")
    assert d.top.cause == "capacity-change", report.to_text(d)
    assert "instances 2 → 1" in d.top.summary and "intra-op threads per instance 1 → 2" in d.top.summary
    assert "busy ratio 0.45 → 1.00 over 2 → 1 instances" in d.top.evidence[1]
    revert = d.top.fixes[0]
    assert revert.action.startswith("revert: instances 1 → 2") and revert.predicted_p95_s is not None
    now_s, after_s = revert.predicted_p95_s
    assert now_s == d.confirm.p95[1] and after_s < 0.1 * now_s  # back near the baseline's 34 ms
    assert "predicted (planner's model): P95 1309.9 ms →" in revert.effect


def test_a_change_of_the_batching_policy_alone_is_a_batching_misconfiguration() -> None:
    """The drill sets batching through model_overrides: the setting and the model's effective batching
    both change; that is still the batching policy and nothing else. Another change beside it is not."""
    said = (
        changes.Change("config", "setting model_overrides.max_batch_size", "unset", "64"),
        changes.Change("config", "batching max_batch_size", "4", "64"),
        changes.Change("config", "batching max_queue_delay_s", "0.0", "0.2"),
    )
    assert changes.batching_only(said)
    assert changes.batching_only(said[1:])
    assert not changes.batching_only(said[:1])  # a setting whose effect on the model is not known
    assert not changes.batching_only((*said, changes.Change("config", "setting max_pending", "512", "64")))
    assert not changes.batching_only((*said, changes.Change("config", "setting model_overrides.instances", "2", "1")))


def test_a_deploy_of_another_model_version_is_named_with_a_rollback() -> None:
    d = run("deploy")
    assert d.top.cause == "deploy" and "model version 1 → 2" in d.top.summary, report.to_text(d)
    assert d.top.fixes[0].scope == "model" and d.top.fixes[0].action.startswith("roll back the deploy")


def test_documents_without_deployment_compare_only_what_they_counted() -> None:
    base, now = pair("preprocess-starvation", DRILLS)
    assert base.deployment is not None and base.deployment.servoscope_version is None  # migrated: unknown
    d = diagnose(base, now)
    assert [c.describe() for c in d.changes] == ["preprocess workers 2 → 1"]
    assert d.top.cause == "preprocess-starvation"


def test_refusals_with_a_flat_p95_are_a_regression_of_availability() -> None:
    d = run("refusals")
    assert not d.confirm.significant and d.availability is not None and d.availability.significant
    assert d.top.cause == "refusals", report.to_text(d)
    assert "failed 0.0% → 40.0%" in d.top.evidence[0] and "queue_full" in d.top.evidence[1]
    same = diagnose(*pair("refusals")[:1] * 2)
    assert same.top.cause == "no-regression" and same.availability is not None and not same.availability.significant


def test_slow_uploads_are_the_clients_links_and_their_408s_are_counted() -> None:
    d = run("slow-uploads")
    assert d.top.cause == "slow-uploads", report.to_text(d)
    assert "requests in ingest now 18" in d.top.evidence[1] and "408 (body too slow) 12" in d.top.evidence[1]
    assert [f.cause for f in d.findings][-1] == "refusals"  # the 408s: availability fell as well


def test_an_ingest_rise_with_a_lagging_event_loop_is_the_servers_stall() -> None:
    base, now = pair("slow-uploads")
    stalled = dataclasses.replace(now, event_loop_lag_p95_s=1.5)
    d = diagnose(base, stalled)
    assert d.top.cause == "ingest-stall" and "event-loop lag P95 2.0 ms → 1500.0 ms" in d.top.evidence[2]


def test_strong_signals_below_the_alarm_are_warnings() -> None:
    d = run("below-alarm")
    assert d.top.cause == "no-regression"
    assert any("2.0 cores of CPU are busy" in w for w in d.warnings) and any("swap in use: 5%" in w for w in d.warnings)
    assert "Warnings (below the alarm)" in report.to_text(d)
    assert not run("refusals").warnings or all("cores" not in w for w in run("refusals").warnings)


def test_a_bursty_neighbour_below_the_contention_rules_mark_is_named_by_the_counterfactual() -> None:
    """The CPU-contention drill's windows with the machine 80 % busy on the mean (bursts above, idle between):
    no rule's cut-off is met; the planner's model finds the slower batches reproduce the regression, and
    the CPU outside the service rose."""
    base, now = pair("cpu-contention", DRILLS)
    d = diagnose(base, dataclasses.replace(now, machine_cpu_utilization_ratio=0.80))
    assert d.top.cause == "cpu-contention" and "bursts" in d.top.summary, report.to_text(d)
    assert d.explanation is not None and d.explanation.leading() == ("inference per batch", pytest.approx(1.0))


@pytest.mark.parametrize(
    ("scenario", "factor"),
    [
        ("traffic-growth", "arrival rate"),
        ("image-drift", "image-size mix"),
        ("slow-inference", "inference per batch"),
        ("preprocess-starvation", "configuration"),
    ],
)
def test_the_counterfactual_leads_with_the_factor_that_changed(scenario: str, factor: str) -> None:
    explained = counterfactual.explain(*pair(scenario, DRILLS))
    leading = explained.leading()
    assert leading is not None and leading[0] == factor, explained.describe()
    assert sum(explained.shares.values()) == pytest.approx(1.0)


def test_a_window_against_itself_reproduces_nothing() -> None:
    base, _ = pair("traffic-growth", DRILLS)
    explained = counterfactual.explain(base, base)
    assert explained.leading() is not None and all(s == 0 for s in explained.shares.values())
    assert set(explained.reproduced_p95_s.values()) == {explained.simulated_p95_s[0]}  # nothing moved beyond noise


@pytest.mark.parametrize("scenario", ["capacity-change", "deploy", "slow-uploads", "several-models"])
def test_a_diagnosis_from_snapshots_takes_well_under_five_seconds(scenario: str) -> None:
    base, now = pair(scenario)
    started = time.process_time()
    diagnose(base, now)
    assert time.process_time() - started <= MAX_DIAGNOSIS_CPU_S


def test_verify_sets_the_predicted_effect_against_the_measured_one() -> None:
    """The capacity change reverted: the window after the revert is the baseline's (the same conditions)."""
    base, before = pair("capacity-change")
    d, checked = verify(base, before, base)
    assert d.top.cause == "capacity-change" and checked is not None
    assert checked.before_s == before.total.p95 and checked.after_s == base.total.p95
    assert checked.confirmed and checked.error <= 0.25
    stuck = verify(base, before, before)[1]  # the fix did nothing
    assert stuck is not None and not stuck.confirmed and stuck.error == pytest.approx(1.0)


def test_verify_on_the_command_line() -> None:
    folder = DATA / "capacity-change"
    out = cli(
        "--verify",
        "--baseline",
        str(folder / "baseline.json"),
        "--before",
        str(folder / "degraded.json"),
        "--after",
        str(folder / "baseline.json"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    checked = json.loads(out.stdout)["verify"]
    assert checked["fix"].startswith("revert: instances 1 → 2") and checked["confirmed"] is True
    missing = cli("--verify", "--baseline", str(folder / "baseline.json"))
    assert missing.returncode == 2 and "--verify needs --baseline, --before and --after" in missing.stderr


def test_a_few_slow_uploaders_in_the_tail_are_a_warning() -> None:
    """As measured outside the drills: 4 % of requests uploading for 10 s move ingest's P99, not the P95."""
    base, _ = pair("refusals")
    ingest = dataclasses.replace(base.stages["ingest"], p99=10.0)
    d = diagnose(base, dataclasses.replace(base, stages={**base.stages, "ingest": ingest}, ingesting=16))
    assert any(w.startswith("a few clients upload slowly: ingest P99") and "in ingest now 16" in w for w in d.warnings)
    assert not any("upload slowly" in w for w in diagnose(base, base).warnings)


def test_measured_slow_uploads_beside_normal_traffic() -> None:
    """A real pair from bench/doctor_scenarios.py (outside-slow-uploads: 18 separate client processes sending
    their 160 KiB JPEGs at 16 KiB/s beside 10 req/s of normal traffic, on a busy shared machine)."""
    d = run("measured-slow-uploads")
    assert d.top.cause == "slow-uploads", report.to_text(d)
    assert "the slowest 5 % at about 16 KiB/s" in d.top.evidence[1] and "requests in ingest now 18" in d.top.evidence[1]


def test_measured_restart_with_one_instance_is_reported_even_below_the_alarm() -> None:
    """A real pair from bench/doctor_scenarios.py (outside-one-instance: restarted with --instances 1
    --intra-op-threads 1 at 40 req/s, on a shared machine already busy outside the service): the P95 rise
    (×1.32) is within the baseline's heavy tail, and the change is still said."""
    d = run("measured-one-instance")
    said = [c.describe() for c in d.changes]
    assert "instances 2 → 1" in said and "setting model_overrides.instances unset → 1" in said
    assert any(c.what == "serving process" and c.kind == "restart" for c in d.changes)
    assert "changed between the windows: instances 2 → 1" in d.warnings
