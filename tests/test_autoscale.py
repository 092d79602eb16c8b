"""Autoscaling in simulation: each re-implemented default pinned against its documented behaviour,
servoscope's policy's rules, the fleet simulation's bookkeeping, the scores, and a short run of
the comparison that bench/autoscale.py prints in full."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from planner_support import profile_dict
from servoscope.fleet.autoscale import baselines, traces
from servoscope.fleet.autoscale.compare import POLICIES, compare, example_replica, profile_replica, setup
from servoscope.fleet.autoscale.fleetsim import Fleet, Tick, simulate_fleet
from servoscope.fleet.autoscale.policy import ObjectivePolicy
from servoscope.fleet.autoscale.score import reversals, violation_seconds


def tick(
    now: float,
    *,
    rate: float = 100.0,
    ongoing: int = 0,
    busy: float = 0.5,
    wait: float | None = 0.01,
    ready: int = 4,
    target: int = 4,
) -> Tick:
    return Tick(now, rate, ongoing, busy, wait, None, ready, target)


def feed(policy: object, start: float, seconds: int, **kwargs: object) -> float:
    for s in range(seconds):
        policy.observe(tick(start + s + 1, **kwargs))  # type: ignore[attr-defined]
    return start + seconds


# --- HPA (kubernetes.io: horizontal-pod-autoscale, "Algorithm details" and "Default Behavior") -------


def test_hpa_does_nothing_within_the_10_percent_tolerance_and_scales_by_the_ratio_beyond() -> None:
    hpa = baselines.HPA()
    assert hpa.period_s == 15 and hpa.tolerance == 0.1 and hpa.target == 0.7
    now = feed(hpa, 0, 15, busy=0.7 * 1.09)
    assert hpa.decide(now, 10) == 10
    hpa = baselines.HPA(target=0.5)
    now = feed(hpa, now, 15, busy=0.75)
    assert hpa.decide(now, 10) == 15  # ceil(10 × 1.5)


def test_hpa_scales_up_at_most_double_or_plus_4_per_sync() -> None:
    hpa = baselines.HPA()
    now = feed(hpa, 0, 15, busy=1.0)  # ratio 1.43
    assert hpa.decide(now, 2) == 3
    hpa = baselines.HPA(target=0.05)  # ratio 20
    now = feed(hpa, 0, 15, busy=1.0)
    assert hpa.decide(now, 2) == 6  # +4 pods beats +100%
    assert hpa.decide(now + 15, 10) == 20  # +100% beats +4


def test_hpa_scales_down_only_to_the_highest_recommendation_of_the_last_300_s() -> None:
    hpa = baselines.HPA()
    now = feed(hpa, 0, 15, busy=0.7)
    assert hpa.decide(now, 10) == 10
    decisions = []
    for _ in range(20):  # 300 s of a quarter of the load, one sync every 15 s
        now = feed(hpa, now, 15, busy=0.7 / 4)
        decisions.append(hpa.decide(now, 10))
    assert decisions[:19] == [10] * 19 and decisions[19] == 3  # ceil(10 / 4) once 10 has left the window


def test_keda_acts_on_the_metric_polled_every_30_s() -> None:
    keda = baselines.KEDA()
    assert keda.polling_s == 30 and keda.target == 0.05
    now = feed(keda, 0, 30, wait=0.05)
    assert keda.decide(now, 4) == 4
    now = feed(keda, now, 15, wait=0.5)  # 10× the target, but the last poll said 1×
    assert keda.decide(now, 4) == 4
    now = feed(keda, now, 15, wait=0.5)
    assert keda.decide(now, 4) == 8  # polled now: +100% (+4 pods) at most


# --- Knative KPA (knative.dev: autoscaling, config-autoscaler defaults) --------------------------------


def test_kpa_stable_mode_sizes_on_the_60_s_mean_concurrency_at_70_percent_of_target() -> None:
    kpa = baselines.KPA(concurrency_target=10)
    assert (kpa.stable_s, kpa.panic_s, kpa.period_s, kpa.panic_threshold) == (60, 6, 2, 2.0)
    now = feed(kpa, 0, 60, ongoing=70, ready=10)
    assert kpa.decide(now, 10) == 10  # 70 / (10 × 0.7)
    now = feed(kpa, now, 60, ongoing=14, ready=10)
    assert kpa.decide(now, 10) == 5  # 2; but at most halved per tick (max-scale-down-rate 2)


def test_kpa_panics_at_twice_the_ready_pods_and_does_not_scale_down_until_a_stable_window_passes() -> None:
    kpa = baselines.KPA(concurrency_target=10)
    now = feed(kpa, 0, 60, ongoing=28, ready=4)
    assert kpa.decide(now, 4) == 4
    now = feed(kpa, now, 6, ongoing=84, ready=4)  # the panic window: 12 pods' worth ≥ 2 × 4
    assert kpa.decide(now, 4) == 12
    now = feed(kpa, now, 6, ongoing=7, ready=12)  # load gone: still in panic, no scale-down
    assert kpa.decide(now, 12) == 12
    now = feed(kpa, now, 60, ongoing=7, ready=12)
    assert kpa.decide(now, 12) == 6  # out of panic after 60 s: halved at most


# --- Ray Serve (ray 2.60: autoscaling_policy.py, config.py AutoscalingConfig) ----------------------


def test_ray_scales_to_ongoing_over_2_after_30_s_up_and_600_s_down() -> None:
    ray = baselines.RayServe()
    assert (ray.target_ongoing, ray.upscale_delay_s, ray.downscale_delay_s, ray.look_back_s) == (2, 30, 600, 30)
    now = feed(ray, 0, 30, ongoing=16)
    ups = []
    for _ in range(31):
        now = feed(ray, now, 1, ongoing=16)
        ups.append(ray.decide(now, 4))
    assert ups[:30] == [4] * 30 and ups[30] == 8  # wanted for 30 s since the first wish, then ceil(16 / 2)
    downs = []
    for _ in range(610):
        now = feed(ray, now, 1, ongoing=4)
        downs.append(ray.decide(now, 8))
    assert downs[:600] == [8] * 600 and 2 in downs[600:]  # wanted for 600 s, then ceil(4 / 2)


def test_ray_resets_its_delay_when_the_direction_changes() -> None:
    ray = baselines.RayServe(look_back_s=1.0)
    now = 0.0
    for _ in range(20):
        now = feed(ray, now, 1, ongoing=16)
        assert ray.decide(now, 4) == 4
    now = feed(ray, now, 1, ongoing=2)
    assert ray.decide(now, 4) == 4  # a scale-down wish: the up timer starts again
    for _ in range(30):
        now = feed(ray, now, 1, ongoing=16)
        assert ray.decide(now, 4) == 4
    now = feed(ray, now, 1, ongoing=16)
    assert ray.decide(now, 4) == 8  # 30 s after the first wish since the reset


# --- servoscope's policy -------------------------------------------------------------------------


def test_the_objective_policy_holds_still_on_noisy_steady_load_for_an_hour() -> None:
    policy = ObjectivePolicy(capacity_per_s=30.0, objective_s=0.25)
    rng = np.random.default_rng(0)
    counts, current = [], 7
    for s in range(3600):
        policy.observe(tick(s + 1.0, rate=float(rng.poisson(170)), ready=current, target=current))
        counts.append(current := policy.decide(s + 1.0, current))
    assert set(counts) == {7}  # ceil(170 / (30 × 0.9)), never left


def test_the_objective_policy_jumps_to_a_spike_at_once_and_comes_down_only_after_its_window() -> None:
    policy = ObjectivePolicy(capacity_per_s=30.0, objective_s=0.25)
    now = feed(policy, 0, 120, rate=170.0, ready=7, target=7)
    assert policy.decide(now, 7) == 7
    now = feed(policy, now, 1, rate=510.0, ready=7, target=7)
    assert policy.decide(now, 7) == 7 + 19  # ceil(510 / 27) on the first second, on top of the 7 left with the backlog
    now = feed(policy, now, 1, rate=510.0, ready=7, target=26)
    assert policy.decide(now, 26) == 26  # only the first second of the jump adds the ones there
    counts, current = [], 26
    for _ in range(30):  # the new replicas serve, the backlog is answered: the 7 come back off
        now = feed(policy, now, 1, rate=510.0, ready=current, target=current)
        counts.append(current := policy.decide(now, current))
    above_noise = math.ceil((510 + 3 * math.sqrt(510)) / 27)
    assert counts[:9] == [26] * 9 and set(counts[12:]) == {above_noise}  # once settled, 3 σ above the jump's rate
    for _ in range(300):
        now = feed(policy, now, 1, rate=170.0, ready=current, target=current)
        counts.append(current := policy.decide(now, current))
    down_at = next(i for i, c in enumerate(counts) if i > 12 and c < above_noise)
    assert down_at + 2 >= 120 and counts[-1] < above_noise  # 120 s after the scale-up at the earliest
    assert reversals([(0, 7), *((i + 1, c) for i, c in enumerate([26, *counts]))]) == 1


def test_without_jump_on_top_the_policy_sizes_a_jump_for_its_rate_alone() -> None:
    policy = ObjectivePolicy(capacity_per_s=30.0, objective_s=0.25, jump_on_top=False)
    now = feed(policy, 0, 120, rate=170.0, ready=7, target=7)
    now = feed(policy, now, 1, rate=510.0, ready=7, target=7)
    assert policy.decide(now, 7) == 19


def test_the_objective_policy_raises_the_alarm_on_queue_wait_once_settled() -> None:
    policy = ObjectivePolicy(capacity_per_s=30.0, objective_s=0.25)
    now = feed(policy, 0, 60, rate=100.0, wait=0.2, ready=4, target=6)  # replicas still starting: no alarm
    assert policy.decide(now, 6) == 6
    now = feed(policy, now, 10, rate=100.0, wait=0.2, ready=6, target=6)
    assert policy.decide(now, 6) == 6  # every replica serving for 9 s: not yet settled
    now = feed(policy, now, 1, rate=100.0, wait=0.2, ready=6, target=6)
    assert policy.decide(now, 6) == 8  # +25%: the capacity it was told is not what it gets


def test_the_objective_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="down_utilization < up_utilization"):
        ObjectivePolicy(30.0, 0.25, up_utilization=0.5, down_utilization=0.6)


# --- the fleet simulation and the scores ---------------------------------------------------------


class Fixed:
    """A policy that asks for a fixed schedule of replica counts."""

    name = "fixed"
    period_s = 1.0

    def __init__(self, schedule: dict[float, int]) -> None:
        self.schedule = schedule

    def observe(self, tick: Tick) -> None:
        pass

    def decide(self, now: float, current: int) -> int:
        return self.schedule.get(now, current)


def test_the_fleet_answers_every_request_through_scaling_and_counts_replica_seconds() -> None:
    service, config = example_replica()
    times = traces.steady(120).arrivals(60.0, seed=3)
    fleet = Fleet(config, startup_s=10, initial=2)
    result = simulate_fleet(times, service, fleet, Fixed({30.0: 4, 80.0: 2}))
    assert np.isfinite(result.total).all() and (result.total > 0).all()
    assert result.targets == [(0.0, 2), (30.0, 4), (80.0, 2)]
    # 2 replicas throughout, 2 more from 30 s until drained a moment after 80 s
    assert 2 * result.duration_s + 2 * 50 <= result.replica_s <= 2 * result.duration_s + 2 * 51


def test_a_replica_takes_no_traffic_while_it_starts() -> None:
    service, config = example_replica()
    times = traces.steady(60).arrivals(60.0, seed=4)  # 60 req/s: more than one replica can hold to the objective
    slow = simulate_fleet(times, service, Fleet(config, startup_s=50, initial=1), Fixed({1.0: 2}))
    fast = simulate_fleet(times, service, Fleet(config, startup_s=0, initial=1), Fixed({1.0: 2}))
    late = times < 50
    assert np.median(slow.total[late]) > 2 * np.median(fast.total[late])


def test_violation_seconds_count_seconds_whose_p95_is_over_the_objective() -> None:
    arrival = np.repeat([0.5, 1.5, 2.5], 20)
    total = np.full(60, 0.1)
    total[20:21] = 1.0  # second 1: one slow of 20: its P95 (the 19th) is fine
    total[40:42] = np.inf  # second 2: two refused of 20: its P95 is refused
    assert violation_seconds(arrival, total, 0.25) == 1


def test_reversals_count_changes_of_direction() -> None:
    assert reversals([(0, 4), (1, 6), (2, 8), (3, 5), (4, 7), (5, 7)]) == 2


def test_a_short_comparison_servoscope_is_on_time_through_a_spike_with_fewer_replica_seconds() -> None:
    service, config = example_replica()
    makers = (POLICIES[0], POLICIES[1], POLICIES[4])  # servoscope, HPA, Ray Serve
    rows = compare((traces.spike(240),), setup(5.0, service, config, fleet_rpm=6000.0), makers)
    ours, hpa, ray = (r.score for r in rows)
    assert ours.violation_s * 3 <= min(hpa.violation_s, ray.violation_s)
    assert ours.replica_s <= min(hpa.replica_s, ray.replica_s)


def test_servoscope_does_not_reverse_on_steady_load_in_the_fleet() -> None:
    service, config = example_replica()
    rows = compare((traces.steady(900),), setup(10.0, service, config), (POLICIES[0],))
    assert rows[0].score.reversals_per_h == 0 and rows[0].score.violation_s == 0


def test_a_measured_profile_drives_the_comparison(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile_dict()))
    service, config, shares = profile_replica(path)
    assert config.instances == 1 and shares == (1.0, 0.0)
    run = setup(5.0, service, config, fleet_rpm=20_000.0, shares=shares)
    rows = compare((traces.spike(120),), run, (POLICIES[0],))
    for_spike = math.ceil(3 * 20_000 / 60 / (run.capacity.per_s * 0.9))
    assert rows[0].score.peak_replicas == run.fleet.initial + for_spike  # sized for the spike at once, on top
