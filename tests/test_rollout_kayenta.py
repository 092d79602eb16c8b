"""Kayenta's judge, re-implemented: its Mann-Whitney interval and Hodges-Lehmann estimate, the
classifier's tolerance band, and the score."""

from __future__ import annotations

import numpy as np
import pytest

from servoscope.rollout.kayenta import Direction, Label, MetricPair, classify, judge, mann_whitney, wilcoxon_diff


def test_interval_and_estimate_match_kayentas_own_check_against_r() -> None:
    # kayenta-mannwhitney's MannWhitneySuite: R's wilcox.test(conf.int=TRUE) gives [6, 39] and 22.5
    result = mann_whitney([10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0], confidence=0.95)
    assert (result.lower, result.upper, result.estimate) == pytest.approx((6.0, 39.0, 22.5), abs=1e-4)


def test_the_estimate_is_the_median_of_pairwise_differences() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.lognormal(0.3, 1.0, 60), rng.lognormal(0.0, 1.0, 50)
    result = mann_whitney(x, y, confidence=0.98)
    assert result.estimate == pytest.approx(np.median(np.subtract.outer(x, y)), abs=1e-3)
    assert result.lower < result.estimate < result.upper


def test_the_rank_statistic_counts_ties_as_r_does() -> None:
    x, y = np.array([1.0, 2.0, 2.0]), np.array([2.0, 3.0])
    # ranks of [1, 2, 2, 2, 3]: 1, 3, 3, 3, 5 → x's sum 7; 7 - 6 - 3 = -2, corrected to -1.5;
    # sigma² = (6/12)·(6 - (27-3)/20) = 2.4
    assert wilcoxon_diff(0.0, 0.0, x, y) == pytest.approx(-1.5 / np.sqrt(2.4))
    with pytest.raises(ValueError, match="all observations are tied"):
        wilcoxon_diff(0.0, 0.0, np.array([1.0, 1.0]), np.array([1.0]))


def test_classification_follows_the_direction_and_the_band() -> None:
    rng = np.random.default_rng(1)
    control = rng.normal(100.0, 5.0, 50)
    slower, faster = control * 1.5 + rng.normal(0, 1, 50), control * 0.5
    assert classify(control, slower, Direction.INCREASE).label is Label.HIGH
    assert classify(control, faster, Direction.INCREASE).label is Label.PASS
    assert classify(control, faster, Direction.EITHER).label is Label.LOW
    assert classify(control, rng.permutation(control)).reason == "The Canary and Baseline data are identical"
    assert classify(control, control + rng.normal(0, 5.0, 50)).label is Label.PASS


def test_degenerate_samples_get_noise_and_no_data_passes() -> None:
    assert classify([1.0] * 20, [2.0] * 20, rng=np.random.default_rng(2)).label is Label.HIGH
    assert classify([3.0] * 5, [3.0] * 7).label is Label.PASS
    assert classify([], [1.0]).label is Label.PASS


def test_the_score_is_the_share_of_passing_metrics() -> None:
    rng = np.random.default_rng(3)
    base = list(rng.normal(10.0, 1.0, 40))
    same = MetricPair("same", base, list(np.asarray(base) + rng.normal(0, 1.0, 40)))
    high = MetricPair("high", base, list(np.asarray(base) * 3), Direction.INCREASE)
    assert judge([same]).classification == "Pass"
    assert judge([same, high]).score == 50.0 and judge([same, high]).classification == "Fail"
    assert judge([same, same, same, high]).classification == "Marginal"
    critical = MetricPair("high", high.control, high.experiment, Direction.INCREASE, critical=True)
    assert judge([same, same, same, same, critical]).score == 0.0
