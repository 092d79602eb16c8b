"""``servoscope plan`` and ``servoscope profile`` end to end: a small profile, its answers, its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner_support import profile_dict
from servoscope.cli import main
from servoscope.loadgen import profiles
from servoscope.loadgen.client import Endpoint
from servoscope.loadgen.mixes import Mix, MixImage
from servoscope.loadgen.runner import LoadPlan, settings_json
from servoscope.loadgen.targets import Target
from servoscope.planner import profile as pf
from support import ServerProcess

FAST = ("--duration", "10s", "--quiet")


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile_dict()))
    return path


def test_the_fleet_question(profile_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    args = ["plan", "--profile", str(profile_file), "--fleet-rpm", "10000", "--slo-p95", "60ms", "--growth", "15%"]
    code = main([*args, "--burst", "2x/5s", "--json", str(out), "--plot", str(tmp_path / "plan.png"), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    fleet = figures["fleet"]
    assert fleet["replicas"] == max(fleet["replicas_steady"], fleet["replicas_burst"])
    assert fleet["at_plan"]["p95_ms"] <= 60.0 and fleet["burst_p95_ms"] <= 60.0
    assert 0 < figures["saturation_per_s"] <= 4 / 0.022 * 1.01  # one instance, full batches of 4 in 22 ms
    assert figures["knee"]["fraction"] < 1
    assert f"fleet: {fleet['replicas']} replicas for 11500 req/min" in printed
    assert "+15% takes each replica from ρ =" in printed
    assert (tmp_path / "plan.png").stat().st_size > 0


def test_one_rate_with_bursty_arrivals_and_overrides(profile_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            "--profile",
            str(profile_file),
            "--rate",
            "60",
            "--arrivals",
            "on-off",
            "--cv2",
            "4",
            "--max-queue-delay-ms",
            "5",
            "--max-pending",
            "64",
            "--mix",
            "50%:320x240,50%:4032x3024",
            *FAST,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "at 60 req/s" in printed and "P95" in printed and "batch_wait" in printed


def test_a_replay_by_phase(profile_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recorded step (+50% from 60 s), replayed: the figures of each phase apart."""
    mix = Mix((MixImage(b"x", "image/jpeg", "320x240.jpeg"),), (1.0,), "one image")
    step = profiles.step(80.0, 120.0, [(60.0, 1.5)])
    load = LoadPlan(Endpoint("127.0.0.1", 9), Target("v1"), mix, profile=step, duration_s=120.0)
    offsets = load.schedule()
    result = {
        "settings": settings_json(load),
        "profile": load.profile.to_json() if load.profile else None,
        "counts": {"scheduled": len(offsets)},
        "mix": {"sent_by_kind": {"320x240.jpeg": len(offsets)}},
    }
    (tmp_path / "result.json").write_text(json.dumps(result))
    assert main(["plan", "--profile", str(profile_file), "--replay", str(tmp_path / "result.json"), *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"replay of {tmp_path / 'result.json'}" in printed
    before, after = (line for line in printed.splitlines() if " s: " in line and "req/s (ρ" in line)
    assert before.split()[0] == "0–60" and after.split()[0] == "60–120"
    p95 = [float(line.split("P95 ")[1].split(" ms")[0]) for line in (before, after)]
    assert p95[1] > p95[0]  # 80 → 120 req/s on one instance of ~180 req/s


def test_a_replay_of_a_real_load_run(
    server: ServerProcess, profile_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`servoscope load -o` against a real server, then `plan --replay`: the file's format, end to end."""
    port = server.url.rsplit(":", 1)[1]
    result = tmp_path / "result.json"
    load = ["load", "--port", port, "--rate", "10", "--duration", "2s", "-o", str(result), "--quiet"]
    assert main([*load, "--cache-dir", str(tmp_path / "img")]) == 0
    scheduled = json.loads(result.read_text())["counts"]["scheduled"]
    figures = tmp_path / "plan.json"
    assert main(["plan", "--profile", str(profile_file), "--replay", str(result), "--json", str(figures), *FAST]) == 0
    assert f"replay of {result}" in capsys.readouterr().out
    replayed = json.loads(figures.read_text())["at_load"]["requests"]  # after the warm-up (the first 10%)
    assert 0.8 * scheduled <= replayed <= scheduled


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--fleet-rpm", "1000"], "--fleet-rpm needs --slo-p95"),
        (["--fleet-rpm", "1000", "--slo-p95", "100ms", "--burst", "3 times"], "a burst is FACTORx/DURATION"),
        (["--fleet-rpm", "1000", "--slo-p95", "100ms", "--growth", "15"], "a growth is a percentage"),
        (["--fleet-rpm", "1000", "--slo-p95", "soon"], "not a duration"),
        (["--max-batch-size", "0"], "batching settings: max_batch_size"),
        (["--mix", "100%:640x480"], "no preprocess samples for image-size class '640x480'"),
        (["--instances", "4"], "no family with instances=4"),
        (["--max-pending", "0"], "--max-pending must be >= 1"),
        (["--rate", "0"], "--rate must be a positive number, got 0.0"),
        (["--rate", "nan"], "--rate must be a positive number, got nan"),
        (["--arrivals", "on-off", "--cv2", "0.5"], "--cv2 of on-off arrivals must be > 1"),
        (["--duration", "2h"], "--duration must be in"),
    ],
)
def test_bad_input_is_named(
    profile_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["plan", "--profile", str(profile_file), *FAST, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--profile", str(tmp_path / "none.json")]) == 2
    assert "none.json does not exist" in capsys.readouterr().err


def test_profile_measures_the_pipeline_then_plan_reads_it(model_repository: Path, tmp_path: Path) -> None:
    """A real (short) measurement: the service's own pipeline, its timing and batch records."""
    path = tmp_path / "measured.json"
    code = main(
        [
            "profile",
            "-o",
            str(path),
            "--model-repository",
            str(model_repository),
            "--families",
            "1x1",
            "--preprocess-workers",
            "1",
            "--max-batch-size",
            "2",
            "--seconds",
            "3",
            "--cache-dir",
            str(tmp_path / "img"),
            "--respond-ms",
            "0.5",
        ]
    )
    assert code == 0
    profile = pf.load(path)
    family = profile.family(1, 1)
    assert set(family.inference_s) <= {1, 2} and 1 in family.inference_s
    assert all(0 < s < 5 for s in family.inference_s[1]) and "320x240" in family.preprocess_s
    assert profile.overheads.respond_s == pytest.approx(0.0005)
    assert profile.machine.cores >= 1
    assert main(["plan", "--profile", str(path), "--rate", "5", *FAST]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seconds", "2m"], "at most 60 s per family"),
        (["--seconds", "0"], "need a duration > 0"),
        (["--max-batch-size", "0"], "batching settings: max_batch_size"),
        (["--max-queue-delay-ms", "-1"], "batching settings: max_queue_delay_s"),
        (["--preprocess-workers", "-1"], "--preprocess-workers must be >= 0"),
        (["--families", "2x0"], "a family needs 1..64 instances and >= 1 thread"),
        (["--mix", "50%:320x240"], "mix shares must add up to 100%"),
        (["--model", "nope"], "no model 'nope' in repository"),
    ],
)
def test_profile_bad_input_is_named(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["profile", "-o", str(tmp_path / "p.json"), "--model-repository", str(model_repository), "--seconds", "1"]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
