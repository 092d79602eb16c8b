"""``servoscope tune``: its ladder of rates, its settings file, the planner's predict API, and one
short real tune run (a real server per configuration, real load, bounded in count)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from planner_support import profile_dict
from servoscope.cli import main
from servoscope.planner import profile as pf
from servoscope.planner.knobs import Knobs, write_settings
from servoscope.planner.predict import max_rate, predict
from servoscope.planner.trial import next_rate
from servoscope.settings import load_settings


def test_the_ladder_climbs_falls_then_bisects() -> None:
    assert next_rate([], 50.0, 0.2) == 50.0
    assert next_rate([(50.0, True)], 50.0, 0.2) == pytest.approx(60.0)
    assert next_rate([(50.0, False)], 50.0, 0.2) == pytest.approx(35.0)
    assert next_rate([(50.0, True), (60.0, False)], 50.0, 0.2) == pytest.approx((50 * 60) ** 0.5)
    assert next_rate([(50.0, False), (35.0, True)], 50.0, 0.2) == pytest.approx((35 * 50) ** 0.5)


def test_the_settings_are_written_into_config_toml_keeping_its_other_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('log_level = "debug"\n[model_overrides]\nprovider = "cpu"\n')
    write_settings(Knobs(8, 2.5, 2, 1, 3), config)
    raw = tomllib.loads(config.read_text())
    assert raw["log_level"] == "debug" and raw["model_overrides"]["provider"] == "cpu"
    settings = load_settings(config)
    assert settings.preprocess_workers == 3
    o = settings.model_overrides
    assert (o.max_batch_size, o.max_queue_delay_s, o.instances, o.intra_op_threads) == (8, 0.0025, 2, 1)


def test_predict_answers_at_a_rate_and_more_load_costs_more() -> None:
    profile = pf.parse(profile_dict())
    knobs = Knobs(4, 2.0, 1, 2, 2)
    light, heavy = predict(profile, knobs, 40.0), predict(profile, knobs, 150.0)
    assert light.p50_ms <= light.p95_ms <= light.p99_ms
    assert light.saturation_per_s == pytest.approx(heavy.saturation_per_s)
    assert 0 < light.utilization < heavy.utilization < 1
    assert heavy.p95_ms > light.p95_ms and heavy.stage_wait_ms["batch_wait"] > light.stage_wait_ms["batch_wait"]
    assert predict(profile, knobs, 40.0) == light  # pure: the same question, the same answer
    with pytest.raises(ValueError, match="arrival_rate"):
        predict(profile, knobs, 0.0)
    with pytest.raises(pf.ProfileError, match="no family with instances=3"):
        predict(profile, Knobs(4, 2.0, 3, 2, 2), 40.0)


def test_max_rate_is_the_highest_rate_meeting_the_objective() -> None:
    profile = pf.parse(profile_dict())
    knobs = Knobs(4, 2.0, 1, 2, 2)
    best = max_rate(profile, knobs, 50.0, requests=8_000)
    assert best is not None and best.p95_ms <= 50.0
    assert predict(profile, knobs, 1.05 * best.arrival_rate_per_s, requests=8_000).p95_ms > 50.0
    assert max_rate(profile, knobs, 1.0, requests=8_000) is None  # faster than one request's service


def test_a_short_real_tune_run(model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, config = tmp_path / "tune.json", tmp_path / "config.toml"
    space = ["--max-batch-size", "1,4", "--max-queue-delay-ms", "0", "--instances", "1", "--intra-op-threads", "1"]
    windows = ["--profile-seconds", "2s", "--window", "1.5s", "--warmup", "0.5s", "--steps", "2"]
    code = main(
        ["tune", "--model-repository", str(model_repository), *space, "--preprocess-workers", "1", *windows,
         "--max-trials", "1", "--slo-p95", "2s", "--json", str(out), "--write", str(config)]
    )  # fmt: skip
    assert code == 0
    figures = json.loads(out.read_text())
    assert figures["grid"] == 2 and len(figures["trials"]) == 1 and "budget" in figures["stopped"]
    best = figures["best"]
    assert best["rate_per_s"] > 0 and best["p95_ms"] <= 2000
    assert len(best["points"]) == 2 and best["limiting_stage"].split(" ")[0] in ("inference", "preprocess")
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "[model_overrides]" in printed and "at loads not measured" in printed
    assert load_settings(config).model_overrides.max_batch_size == best["knobs"]["max_batch_size"]


def test_a_space_or_profile_tune_cannot_use_is_refused_before_any_server_starts(
    model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = ["--model-repository", str(model_repository)]
    assert main(["tune", *repo, "--instances", "1,two"]) == 2
    assert "--instances is a comma-separated list of numbers, got '1,two'" in capsys.readouterr().err
    assert main(["tune", *repo, "--max-batch-size", "0"]) == 2
    assert "max_batch_size must be >= 1, got 0" in capsys.readouterr().err
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps(profile_dict()))  # one family: 1 instance x 2 threads
    assert main(["tune", *repo, "--profile", str(profile), "--instances", "2", "--intra-op-threads", "2"]) == 2
    assert "no family with instances=2 and intra_op_threads=2" in capsys.readouterr().err
