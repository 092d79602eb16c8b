"""The latency check's evidence: every alternative is a fair bet under the null, and the whole-tail
alternatives find a stretched tail with more evidence than one threshold at a time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import lognorm

from servoscope.rollout.evidence import latency_log_e, tail_log_e, threshold_log_e

QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995)
RATIOS = (1.2, 1.4, 1.7, 2.2, 3.0)
EXPONENTS = (0.95, 0.9, 0.85, 0.8, 0.7, 0.55)
STARTS = (0.0, 0.75, 0.9)


def one_request(bin_: int, canary: bool) -> np.ndarray:
    """Counts (4, Q) of one answer landing in ``bin_`` (0: below every threshold, Q: above every one)."""
    counts = np.zeros((4, len(QUANTILES)))
    above = np.arange(len(QUANTILES)) < bin_
    arm = 0 if canary else 1
    counts[arm] = above
    counts[arm + 2] = ~above
    return counts


@pytest.mark.parametrize("rho", [0.05, 0.2])
@pytest.mark.parametrize("bin_", range(len(QUANTILES) + 1))
def test_each_answer_is_a_fair_bet_under_the_null(rho: float, bin_: int) -> None:
    """Given the bin an answer lands in, its arm is the canary's with chance rho: the evidence's mean is 1."""
    for evidence in (
        lambda c: tail_log_e(c, rho, QUANTILES, EXPONENTS, STARTS),
        lambda c: latency_log_e(c, rho, QUANTILES, RATIOS, EXPONENTS, STARTS),
    ):
        canary = float(np.exp(evidence(one_request(bin_, True))))
        baseline = float(np.exp(evidence(one_request(bin_, False))))
        assert rho * canary + (1.0 - rho) * baseline == pytest.approx(1.0)


def test_no_answers_no_evidence() -> None:
    nothing = np.zeros((4, len(QUANTILES), 3))
    assert np.allclose(tail_log_e(nothing, 0.05, QUANTILES, EXPONENTS, STARTS), 0.0)


def expected_counts(n: int, rho: float, canary_survival: np.ndarray) -> np.ndarray:
    """Counts (4, Q) expected over ``n`` answers when the canary exceeds each threshold with ``canary_survival``."""
    baseline_survival = 1.0 - np.asarray(QUANTILES)
    canary, baseline = n * rho, n * (1.0 - rho)
    return np.stack(
        [
            canary * canary_survival,
            baseline * baseline_survival,
            canary * (1.0 - canary_survival),
            baseline * (1.0 - baseline_survival),
        ]
    )


def test_a_tail_stretched_beyond_p90_shows_more_in_the_whole_tail() -> None:
    """A lognormal (sigma 1) whose answers above its P90 are stretched so that its P95 rises 20%:
    the canary's survival at the baseline's quantiles, then the evidence expected after 60,000 answers."""
    dist = lognorm(1.0)
    q90, q95 = dist.ppf([0.9, 0.95])
    factor = (1.2 * q95 - q90) / (q95 - q90)
    thresholds = dist.ppf(QUANTILES)
    before = np.where(thresholds > q90, q90 + (thresholds - q90) / factor, thresholds)  # where the canary exceeds each
    survival = dist.sf(before)
    counts = expected_counts(60_000, 0.05, survival)
    one_at_a_time = float(threshold_log_e(counts, 0.05, QUANTILES, RATIOS))
    whole = float(tail_log_e(counts, 0.05, QUANTILES, EXPONENTS, STARTS))
    assert whole > one_at_a_time + 1.0
    assert float(latency_log_e(counts, 0.05, QUANTILES, RATIOS, EXPONENTS, STARTS)) > one_at_a_time


def test_an_unchanged_canary_loses_evidence() -> None:
    counts = expected_counts(60_000, 0.05, 1.0 - np.asarray(QUANTILES))
    assert float(tail_log_e(counts, 0.05, QUANTILES, EXPONENTS, STARTS)) < 0.0
