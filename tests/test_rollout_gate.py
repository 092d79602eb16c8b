"""The sequential gate: its false-alarm bound (a seeded Monte Carlo), its power, INCONCLUSIVE below
the minimum information, the stage a FAIL names, errors, and the disagreement budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from servoscope.rollout import COLUMNS, Check, Gate, GateConfig, Observation, Outcome, Verdict, from_timing
from servoscope.rollout.replay import replay
from servoscope.stages import STAGES, Stage, Timing

INFERENCE = COLUMNS.index("inference")
QUEUE = COLUMNS.index("preprocess_wait")


@dataclass
class Traffic:
    canary: np.ndarray
    rows: np.ndarray
    failed: np.ndarray


def traffic(seed: int, n: int, share: float, error_rate: float = 0.001, drift: bool = False) -> Traffic:
    """Stage durations (lognormal, heavy-tailed) of ``n`` requests, each a canary with probability ``share``."""
    rng = np.random.default_rng(seed)
    canary = rng.random(n) < share
    stages = rng.lognormal(np.log(0.002), 0.8, (n, len(COLUMNS) - 1))
    if drift:  # the load rises for both arms alike: the test rests on the split, not on stationarity
        stages *= np.linspace(1.0, 3.0, n)[:, None]
    rows = np.column_stack([stages.sum(axis=1), stages])
    return Traffic(canary, rows, rng.random(n) < error_rate)


def slow_down(t: Traffic, column: int, seconds: float) -> Traffic:
    rows = t.rows.copy()
    rows[t.canary, column] += seconds
    rows[t.canary, 0] += seconds
    return Traffic(t.canary, rows, t.failed)


def observation(t: Traffic, i: int, reason: str = "overloaded") -> Observation:
    stages = dict(zip(COLUMNS[1:], t.rows[i, 1:]))
    failed = bool(t.failed[i])
    return Observation(bool(t.canary[i]), float(t.rows[i, 0]), stages, failed, reason if failed else "")


def stream(gate: Gate, t: Traffic) -> list[Verdict]:
    return [gate.observe(observation(t, i)) for i in range(len(t.canary))]


def first_fail(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.outcome is Outcome.FAIL), None)


SMALL = GateConfig(
    canary_share=0.2, min_canary_requests=300, min_baseline_requests=300, refresh_every=64, baseline_window=1024
)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_false_fails_stay_below_alpha_looking_after_every_request(alpha: float) -> None:
    config = GateConfig(canary_share=0.2, alpha=alpha, min_canary_requests=1000, refresh_every=64, baseline_window=1024)
    replays = 200
    fails = sum(
        replay(t.canary, t.rows[:, 0], t.failed, config).fail_at is not None
        for t in (traffic(seed, 4000, 0.2, error_rate=0.01, drift=seed % 2 == 0) for seed in range(replays))
    )
    assert fails / replays <= alpha


def test_a_clear_regression_fails_within_a_few_hundred_canary_requests() -> None:
    t = slow_down(traffic(1, 20_000, 0.2), INFERENCE, 0.004)  # +4 ms on a ~15 ms total
    failed = first_fail(stream(Gate(SMALL), t))
    assert failed is not None and failed.check is Check.LATENCY
    assert failed.canary_requests <= 300


def test_power_on_a_tail_regression_by_monte_carlo() -> None:
    config = GateConfig(canary_share=0.2, min_canary_requests=1000, refresh_every=64, baseline_window=1024)
    detected = 0
    for seed in range(40):
        t = traffic(100 + seed, 5000, 0.2)
        rows = t.rows.copy()
        rows[t.canary] *= 1.3
        detected += replay(t.canary, rows[:, 0], t.failed, config).fail_at is not None
    assert detected >= 38


def test_below_the_minimum_information_it_is_inconclusive_never_pass() -> None:
    t = traffic(2, 3000, 0.2, error_rate=0.0)
    verdicts = stream(Gate(SMALL), t)
    canaries = np.cumsum(t.canary)
    baselines = np.cumsum(~t.canary)
    for i, verdict in enumerate(verdicts):
        enough = canaries[i] >= SMALL.min_canary_requests and baselines[i] >= SMALL.min_baseline_requests
        assert verdict.outcome is (Outcome.PASS if enough else Outcome.INCONCLUSIVE), (i, verdict.reason)
    assert "of 300 canary requests" in verdicts[100].reason


def test_a_fail_names_the_stage_that_slowed() -> None:
    for column, stage in ((INFERENCE, Stage.INFERENCE), (QUEUE, Stage.PREPROCESS_WAIT)):
        failed = first_fail(stream(Gate(SMALL), slow_down(traffic(3, 20_000, 0.2), column, 0.003)))
        assert failed is not None and failed.stage == stage.value
        assert stage.value in failed.reason


def test_when_a_slow_stage_makes_the_next_one_wait_the_one_that_grew_most_is_named() -> None:
    """A slowed stage makes the next one wait too (inference slowed, requests waiting for it in
    batch_wait): both show a slowdown as often; the stage whose canary durations grew most is named."""
    batch_wait = COLUMNS.index("batch_wait")
    for slower, other, named in ((INFERENCE, batch_wait, "inference"), (batch_wait, INFERENCE, "batch_wait")):
        t = slow_down(slow_down(traffic(4, 20_000, 0.2), slower, 0.1), other, 0.04)
        failed = first_fail(stream(Gate(SMALL), t))
        assert failed is not None and failed.stage == named


def test_a_fail_stands() -> None:
    gate = Gate(SMALL)
    t = traffic(4, 20_000, 0.2)
    slowed = slow_down(t, INFERENCE, 0.01)
    verdicts = [gate.observe(observation(slowed, i)) for i in range(3000)]
    failed = first_fail(verdicts)
    assert failed is not None
    assert all(gate.observe(observation(t, i)) is failed for i in range(3000, 6000))


def test_errors_rising_tenfold_fail_and_say_which_errors() -> None:
    t = traffic(5, 40_000, 0.2, error_rate=0.0)
    rng = np.random.default_rng(5)
    t.failed[:] = rng.random(len(t.failed)) < np.where(t.canary, 0.01, 0.001)
    failed = first_fail(stream(Gate(SMALL), t))
    assert failed is not None and failed.check is Check.ERRORS
    assert failed.canary_requests <= 2000
    assert "overloaded" in failed.reason


def mirrored(gate: Gate, n: int, disagreement: float, seed: int) -> list[Verdict]:
    rng = np.random.default_rng(seed)
    return [gate.observe_mirror(agree=bool(rng.random() >= disagreement)) for _ in range(n)]


def with_budget(budget: float) -> Gate:
    config = GateConfig(
        canary_share=0.2,
        min_canary_requests=10,
        min_baseline_requests=10,
        max_disagreement=budget,
        min_mirrored_requests=200,
        refresh_every=8,
        baseline_window=64,
    )
    gate = Gate(config)
    stream(gate, traffic(6, 200, 0.2, error_rate=0.0))
    return gate


def test_disagreement_above_the_budget_fails() -> None:
    failed = first_fail(mirrored(with_budget(0.02), 2000, 0.10, seed=7))
    assert failed is not None and failed.check is Check.DISAGREEMENT
    assert "budget 0.02" in failed.reason


def test_disagreement_within_the_budget_passes_after_the_minimum() -> None:
    verdicts = mirrored(with_budget(0.05), 400, 0.005, seed=8)
    assert verdicts[198].outcome is Outcome.INCONCLUSIVE and "of 200 mirrored requests" in verdicts[198].reason
    assert verdicts[-1].outcome is Outcome.PASS


def test_a_zero_budget_fails_on_the_first_disagreement() -> None:
    gate = with_budget(0.0)
    assert gate.observe_mirror(agree=True).outcome is not Outcome.FAIL
    assert gate.observe_mirror(agree=False).check is Check.DISAGREEMENT


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_the_replay_decides_as_the_streaming_gate(seed: int) -> None:
    t = slow_down(traffic(seed, 12_000, 0.2), INFERENCE, 0.0015 * (seed - 9))
    verdicts = stream(Gate(SMALL), t)
    result = replay(t.canary, t.rows, t.failed, SMALL)
    failed = first_fail(verdicts)
    assert failed is not None
    assert (result.fail_at, result.check, result.stage) == (failed.canary_requests, failed.check, failed.stage)


def test_a_timing_record_becomes_an_observation() -> None:
    timing = Timing(start=1.0, status=200)
    for i, stage in enumerate(STAGES, start=1):
        timing.end(stage, 1.0 + 0.001 * i)
    seen = from_timing(timing, canary=True)
    assert seen.canary and not seen.failed
    assert seen.total_s == pytest.approx(0.007)
    assert seen.row()[INFERENCE] == pytest.approx(0.001)
    refused = from_timing(Timing(start=1.0, status=429, error="overloaded"), canary=False)
    assert refused.failed and refused.reason == "overloaded"


def test_the_verdict_is_json_ready() -> None:
    gate = with_budget(0.0)
    body = gate.observe_mirror(agree=False).json()
    assert body["outcome"] == "FAIL" and body["check"] == "disagreement"
    assert {e["check"] for e in body["evidence"]} == {"latency", "errors", "disagreement"}
    assert body["evidence"][2]["log_e"] == "inf"


def test_a_record_without_durations_is_counted_but_not_compared() -> None:
    gate = Gate(SMALL)
    stream(gate, traffic(13, 2000, 0.2, error_rate=0.0))
    before = gate.evidence()[0].log_e
    verdict = gate.observe(Observation(canary=True))  # no durations at all
    assert verdict.canary_requests > 0 and gate.evidence()[0].log_e == before
