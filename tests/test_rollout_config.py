"""The gate's configuration refuses what it cannot use, and says what it received."""

from __future__ import annotations

from typing import Any

import pytest

from servoscope.rollout import GateConfig, GateConfigError


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("canary_share", 0.0, "canary_share must be in (0, 1), got 0.0"),
        ("canary_share", 1.5, "canary_share must be in (0, 1), got 1.5"),
        ("canary_share", "5%", "canary_share must be a finite number, got '5%'"),
        ("alpha", 0.7, "alpha must be in (0, 0.5), got 0.7"),
        ("alpha", float("nan"), "alpha must be a finite number, got nan"),
        ("alpha_shares", (0.5, 0.5, 0.5), "alpha_shares must be >= 0 and add up to 1, got (0.5, 0.5, 0.5)"),
        ("alpha_shares", (1.0,), "alpha_shares must be three shares (latency, errors, disagreement), got (1.0,)"),
        ("latency_quantiles", (0.5, 1.0), "each of latency_quantiles must be in (0, 1), got 1.0 in (0.5, 1.0)"),
        ("latency_quantiles", (), "latency_quantiles must be a non-empty tuple, got ()"),
        ("latency_ratios", (0.9,), "each of latency_ratios must be in (1, inf), got 0.9 in (0.9,)"),
        ("latency_quantiles", (0.9, 0.5), "latency_quantiles must increase strictly, got (0.9, 0.5)"),
        ("latency_tail_exponents", (1.0,), "each of latency_tail_exponents must be in (0, 1), got 1.0 in (1.0,)"),
        ("latency_tail_starts", (-0.1,), "each of latency_tail_starts must be in [0, 1), got -0.1 in (-0.1,)"),
        ("error_ratios", [2.0], "error_ratios must be a non-empty tuple, got [2.0]"),
        ("max_disagreement", 1.0, "max_disagreement must be in [0, 1) or None, got 1.0"),
        ("min_canary_requests", 0, "min_canary_requests must be an integer >= 1, got 0"),
        ("min_baseline_requests", True, "min_baseline_requests must be an integer >= 1, got True"),
        ("refresh_every", 2.5, "refresh_every must be an integer >= 1, got 2.5"),
        ("baseline_window", 100, "baseline_window must be an integer >= 256, got 100"),
        (
            "min_baseline_requests",
            100,
            "min_baseline_requests must be >= refresh_every (256): "
            "no answer is compared before the first thresholds, got 100",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_what_was_received(field: str, value: Any, message: str) -> None:
    with pytest.raises(GateConfigError) as caught:
        GateConfig(**{field: value})
    assert str(caught.value) == message


def test_the_defaults_are_valid_and_split_alpha() -> None:
    config = GateConfig()
    assert config.max_disagreement is None
    shares = (config.alpha_latency, config.alpha_errors, config.alpha_disagreement)
    assert shares == pytest.approx((0.01 / 6, 0.01 * 5 / 6, 0))
    budget = GateConfig(max_disagreement=0.02)
    shares = (budget.alpha_latency, budget.alpha_errors, budget.alpha_disagreement)
    assert shares == pytest.approx((0.0015, 0.0075, 0.001))
    assert GateConfig(alpha_shares=(0.0, 0.0, 1.0)).alpha_errors == pytest.approx(0.005)


def test_the_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        GateConfig().alpha = 0.2  # type: ignore[misc]
    assert isinstance(GateConfigError("x"), ValueError)
