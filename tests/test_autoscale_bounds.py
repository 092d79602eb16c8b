"""The bounds the autoscaling comparison is judged against (the no-lag oracle, the pre-provisioned
headroom) and the HPA ``servoscope deploy k8s`` writes, run from its own manifest by HPA v2's algorithm."""

from __future__ import annotations

from typing import Any

import pytest

from servoscope.fleet.autoscale import bounds, hpa_v2, traces
from servoscope.fleet.autoscale.compare import PLAN, POLICIES, compare, example_replica, oracle, provisioned, setup
from servoscope.fleet.autoscale.fleetsim import Fleet, Tick, simulate_fleet
from servoscope.fleet.autoscale.score import score
from servoscope.fleet.k8s import autoscaling, queue_wait
from servoscope.fleet.k8s.arrival_rate import RATE_METRIC
from servoscope.fleet.k8s.target import Target

# --- the oracle and the pre-provisioned bound ----------------------------------------------------------


def test_the_oracle_orders_at_the_first_second_of_a_change_on_top_of_a_fleet_that_cannot_carry_it() -> None:
    rate = {0: 100.0, 10: 300.0, 20: 100.0, 30: 110.0}
    oracle_ = bounds.Oracle(lambda t: rate[max(s for s in rate if s <= t)], capacity_per_s=30.0)
    assert oracle_.decide(1, 1) == 4  # ceil(100 / (30 × 0.9)) from its first decision
    assert oracle_.decide(9, 4) == 4
    assert oracle_.decide(10, 4) == 4 + 12  # 300 > 4 × 30: 12 for the rate, on top of the 4 left with the backlog
    assert oracle_.decide(11, 16) == 16  # nothing new to learn
    assert oracle_.decide(20, 16) == 4  # down at once, with the rate
    assert oracle_.decide(30, 4) == 5  # 110 ≤ 4 × 30: a rise the fleet carries is sized for itself alone


@pytest.fixture(scope="module")
def short_spike() -> Any:
    service, config = example_replica()
    return traces.spike(240), service, config


def test_the_oracle_pays_the_start_up_and_nothing_more_and_no_policy_beats_it(short_spike: Any) -> None:
    trace, service, config = short_spike
    for startup_s in (3.0, 9.0):
        run = setup(startup_s, service, config, fleet_rpm=6000.0)
        floor = oracle((trace,), run)[0].score.violation_s
        assert startup_s - 1 <= floor <= startup_s + 1
    assert all(floor <= row.score.violation_s for row in compare((trace,), run, POLICIES))


def test_the_pre_provisioned_bound_is_the_fewest_steady_replicas_without_a_violation(short_spike: Any) -> None:
    trace, service, config = short_spike
    run = setup(8.0, service, config, fleet_rpm=6000.0)
    held = provisioned(trace, run)
    assert held.replicas > run.fleet.initial and held.score.violation_s == 0 and held.score.changes == 0
    times = trace.arrivals(run.base_per_s, run.seed)
    fewer = Fleet(config, run.fleet.startup_s, 1, run.fleet.max_replicas, held.replicas - 1)
    assert score(simulate_fleet(times, service, fewer, bounds.Hold()), run.objective_s).violation_s > 0
    assert held.score.replica_s == pytest.approx(held.replicas * trace.duration_s, rel=0.01)


# --- the generated HPA, simulated -------------------------------------------------------------------------


def ticks(
    hpa: hpa_v2.HPAv2, start: float, seconds: int, wait_s: float, ready: int, target: int, per_pod: int = 0
) -> float:
    """``seconds`` ticks of ``ready`` pods, each seeing ``per_pod`` arrivals a second, waiting ``wait_s``."""
    for s in range(seconds):
        by_pod = dict.fromkeys(range(ready), per_pod)
        hpa.observe(Tick(start + s + 1, 100.0, 0, 0.5, wait_s, None, ready, target, by_pod))
    return start + seconds


def test_the_generated_hpa_is_read_from_the_generators_manifest() -> None:
    hpa = hpa_v2.generated(PLAN)
    written = autoscaling.hpa(PLAN, Target())["spec"]
    [metric] = hpa.metrics
    assert metric == hpa_v2.PodsMetric(RATE_METRIC, pytest.approx(PLAN.arrivals_target_per_s, abs=0.001))
    assert hpa.metric_s == 60
    assert (hpa.min_replicas, hpa.max_replicas) == (written["minReplicas"], written["maxReplicas"])
    up = written["behavior"]["scaleUp"]
    assert hpa.up.window_s == up["stabilizationWindowSeconds"] and len(hpa.up.rules) == len(up["policies"])


def test_a_change_to_the_generators_behavior_changes_the_simulated_hpa(monkeypatch: pytest.MonkeyPatch) -> None:
    def decisions() -> list[int]:
        hpa, out, current = hpa_v2.generated(PLAN), [], 4
        now = 0.0
        for _ in range(4):
            per_pod = round(10 * PLAN.arrivals_target_per_s)
            now = ticks(hpa, now, 15, wait_s=0.0, ready=current, target=current, per_pod=per_pod)
            out.append(current := hpa.decide(now, current))
        return out

    assert decisions() == [8, 16, 32, 64]  # +100% (or +4) per 15 s: the generated scaleUp
    slower = autoscaling.behavior()
    slower["scaleUp"]["policies"] = [{"type": "Pods", "value": 1, "periodSeconds": 30}]
    monkeypatch.setattr(autoscaling, "behavior", lambda: slower)
    assert decisions() == [5, 5, 6, 6]  # one pod per 30 s


def manual(**behavior: Any) -> hpa_v2.HPAv2:
    rules = {
        "scaleUp": (0, "Max", [("Percent", 100, 15), ("Pods", 4, 15)]),
        "scaleDown": (300, "Max", [("Pods", 1, 60)]),
    }
    rules.update(behavior)
    spec = {
        key: {
            "stabilizationWindowSeconds": window,
            "selectPolicy": select,
            "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies],
        }
        for key, (window, select, policies) in rules.items()
    }
    document = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 100,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": queue_wait.WAIT_METRIC},
                        "target": {"type": "AverageValue", "averageValue": "100m"},
                    },
                }
            ],
            "behavior": spec,
        },
    }
    return hpa_v2.HPAv2.from_manifest(document, metric_s=15)


def test_hpa_v2_keeps_the_count_within_tolerance_and_counts_starting_pods_as_missing() -> None:
    hpa = manual()
    now = ticks(hpa, 0, 15, wait_s=0.109, ready=6, target=6)
    assert hpa.decide(now, 6) == 6  # |1.09 − 1| ≤ 0.1
    hpa = manual()
    now = ticks(hpa, 0, 15, wait_s=0.12, ready=4, target=6)
    assert hpa.decide(now, 6) == 6  # 2 missing count as 0: 4 × 1.2 / 6 = 0.8 turns the direction: no change
    hpa = manual()
    now = ticks(hpa, 0, 15, wait_s=0.2, ready=4, target=6)
    assert hpa.decide(now, 6) == 8  # 4 × 2 / 6 = 1.33 over 6 pods


def test_hpa_v2_scales_down_after_its_stabilization_window_at_its_policys_pace() -> None:
    hpa = manual()
    now = ticks(hpa, 0, 15, wait_s=0.1, ready=10, target=10)
    assert hpa.decide(now, 10) == 10
    counts, current = [], 10
    for _ in range(30):  # 450 s of a tenth of the target
        now = ticks(hpa, now, 15, wait_s=0.01, ready=current, target=current)
        counts.append(current := hpa.decide(now, current))
    assert counts[:19] == [10] * 19  # the 10 of 0 s leaves the 300 s window at the 20th sync
    assert counts[19:] == [9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7]  # one pod per 60 s


def test_hpa_v2_select_policy_min_and_disabled() -> None:
    hpa = manual(scaleUp=(0, "Min", [("Percent", 100, 15), ("Pods", 4, 15)]))
    now = ticks(hpa, 0, 15, wait_s=1.0, ready=10, target=10)
    assert hpa.decide(now, 10) == 14  # the smaller change: +4 beats +100%
    hpa = manual(scaleUp=(0, "Disabled", [("Pods", 4, 15)]))
    now = ticks(hpa, 0, 15, wait_s=1.0, ready=10, target=10)
    assert hpa.decide(now, 10) == 10


def test_hpa_v2_refuses_a_manifest_it_cannot_run() -> None:
    with pytest.raises(hpa_v2.ManifestError, match="autoscaling/v2"):
        hpa_v2.HPAv2.from_manifest({"apiVersion": "autoscaling/v1"}, 60)
    with pytest.raises(hpa_v2.ManifestError, match="quantity"):
        hpa_v2.quantity("50 ms")
    document = autoscaling.hpa(PLAN, Target())
    document["spec"]["metrics"][0]["pods"]["metric"]["name"] = "http_requests"
    with pytest.raises(hpa_v2.ManifestError, match="not simulated"):
        hpa_v2.HPAv2.from_manifest(document, 60)


def test_the_arrival_rate_is_each_ready_pods_last_minute_and_a_young_pod_reads_low() -> None:
    hpa = hpa_v2.generated(PLAN)  # a target of 26.96 a pod
    now = ticks(hpa, 0, 60, wait_s=0.0, ready=4, target=4, per_pod=27)
    assert hpa.value(RATE_METRIC) == 27 and hpa.decide(now, 4) == 4  # on target
    for s in range(15):  # a fifth pod joins: the balancer gives each 27 × 4 / 5 ≈ 21.6 a second
        hpa.observe(Tick(now + s + 1, 108.0, 0, 0.5, 0.0, None, 5, 5, {0: 22, 1: 22, 2: 22, 3: 21, 4: 21}))
    # the four read (45 × 27 + 15 × 21.75) / 60, the new one 15 × 21 / 60 (Prometheus divides by the window)
    assert hpa.value(RATE_METRIC) == pytest.approx((4 * (45 * 27 + 15 * 21.75) + 15 * 21) / 60 / 5)


def test_the_generated_hpa_does_not_thrash_on_steady_load_where_the_queue_wait_hpa_did() -> None:
    """Seeded: the same half hour of steady Poisson arrivals at 10,000 a minute, through the HPA
    ``deploy k8s`` writes and through an HPA with the same behaviour on the queue wait (50 ms) instead."""
    service, config = example_replica()
    run = setup(10.0, service, config)
    times = traces.steady(1800).arrivals(run.base_per_s, run.seed)
    plan = PLAN.model_copy(update={"replica_capacity_per_s": run.capacity.per_s})
    rate = run.run(times, hpa_v2.generated(plan))
    document = autoscaling.hpa(plan, Target())
    document["spec"]["metrics"] = [_wait_metric(plan.queue_wait_target_s)]
    wait = run.run(times, hpa_v2.HPAv2.from_manifest(document, 60))
    assert rate.reversals_per_h <= 2 and rate.violation_s == 0
    assert wait.reversals_per_h > 2 * rate.reversals_per_h + 4 and wait.violation_s > 0
    assert rate.replica_s < 1.2 * run.fleet.initial * 1800  # sized for the load, not held at the top


def _wait_metric(target_s: float) -> dict[str, Any]:
    metric = {"name": queue_wait.WAIT_METRIC}
    return {
        "type": "Pods",
        "pods": {"metric": metric, "target": {"type": "AverageValue", "averageValue": f"{target_s * 1000:g}m"}},
    }
