"""The fleet's autoscaling decision (servoscope/fleet/ray/scaling.py), a pure function: no Ray here."""

from __future__ import annotations

import pytest

from servoscope.fleet.ray.scaling import ReplicaSignal, ScalingRule, desired_replicas, mean_wait_s

RULE = ScalingRule(wait_target_s=0.05, min_replicas=2, max_replicas=10)


def signals(wait_s: float, busy_ratio: float, replicas: int, served: float = 100.0) -> list[ReplicaSignal]:
    """``replicas`` alike replicas whose requests each waited ``wait_s``."""
    return [ReplicaSignal(wait_s * served, served, busy_ratio) for _ in range(replicas)]


def test_the_mean_wait_is_a_ratio_of_sums_across_replicas() -> None:
    uneven = [ReplicaSignal(10.0, 100.0, 0.5), ReplicaSignal(0.0, 300.0, 0.5)]
    assert mean_wait_s(uneven) == pytest.approx(10.0 / 400.0)  # not the mean of 0.1 and 0
    assert mean_wait_s([ReplicaSignal(0.0, 0.0, 0.0)]) == 0.0  # idle: no division by zero


@pytest.mark.parametrize(
    ("wait_s", "current", "expected"),
    [
        (0.08, 4, 7),  # 1.6 × the target: 4 × 1.6 = 6.4 → 7
        (5.0, 4, 8),  # far over: at most doubling in one decision
        (0.056, 4, 5),  # just over the tolerance: at least one more
        (5.0, 8, 10),  # never above the maximum
    ],
)
def test_waiting_over_the_target_adds_replicas_in_proportion(wait_s: float, current: int, expected: int) -> None:
    assert desired_replicas(current, signals(wait_s, 0.9, current), RULE) == expected


def test_within_the_tolerance_the_size_holds() -> None:
    for wait_s in (0.046, 0.05, 0.054):
        assert desired_replicas(4, signals(wait_s, 0.9, 4), RULE) == 4


def test_short_waits_remove_one_replica_only_when_the_others_can_take_its_work() -> None:
    assert desired_replicas(4, signals(0.0, 0.3, 4), RULE) == 3  # 4 × 0.3 over 3 = 0.4 busy: under 0.6
    assert desired_replicas(4, signals(0.0, 0.5, 4), RULE) == 4  # 4 × 0.5 over 3 = 0.67: too busy after
    assert desired_replicas(2, signals(0.0, 0.0, 2), RULE) == 2  # never under the minimum


def test_no_signal_yet_keeps_the_size_within_bounds() -> None:
    assert desired_replicas(4, [], RULE) == 4
    assert desired_replicas(1, [], RULE) == 2


def test_a_rule_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="wait_target_s must be > 0, got 0"):
        ScalingRule(wait_target_s=0)
    with pytest.raises(ValueError, match="min_replicas <= max_replicas, got 3 and 2"):
        ScalingRule(wait_target_s=0.05, min_replicas=3, max_replicas=2)


def test_ray_serves_policy_reads_the_replicas_metrics_by_replica() -> None:
    from types import SimpleNamespace

    from servoscope.fleet.ray.policy import QueueWaitPolicy

    policy = QueueWaitPolicy(wait_target_s=0.05, min_replicas=1, max_replicas=4)
    fake_context = SimpleNamespace(  # a fake of Ray Serve's AutoscalingContext: only what the policy reads
        current_num_replicas=2,
        running_replicas=["a", "b", "starting"],
        aggregated_metrics={"wait_s_sum": {"a": 8.0, "b": 8.0}, "served": {"a": 100.0, "b": 100.0}},
        policy_state={"kept": True},
    )
    assert policy(fake_context) == (4, {"kept": True})  # 80 ms waited against 50: 2 × 1.6 → 4
