"""Saturation, the knee and the fleet plan on services whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoscope.models.config import BatchingConfig
from servoscope.planner import fleet, plan, service
from servoscope.planner.service import ServiceTimes
from servoscope.planner.sim import SimConfig
from servoscope.planner.summary import Summary


def replica(inference: dict[int, float], max_batch: int, instances: int = 1, delay_s: float = 0.0) -> plan.Replica:
    st = service.fixed({"any": 0.0}, inference, max_batch)
    config = SimConfig(
        1, instances, BatchingConfig(max_batch_size=max_batch, max_queue_delay_s=delay_s, max_queue_size=10**6)
    )
    return plan.Replica(st, config, (1.0,))


def mm1_replica(mu: float) -> plan.Replica:
    quantiles = -np.log(1 - (np.arange(20000) + 0.5) / 20000) / mu
    st = ServiceTimes(("any",), (np.zeros(1),), (np.zeros(0), quantiles), (np.zeros(0), np.zeros(1)))
    return plan.Replica(
        st, SimConfig(1, 1, BatchingConfig(max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=10**6)), (1.0,)
    )


def test_saturation_of_single_requests() -> None:
    assert plan.saturation(replica({1: 0.010}, 1)) == pytest.approx(100.0, rel=0.01)


def test_saturation_of_full_batches_on_two_instances() -> None:
    r = replica({1: 0.010, 4: 0.022}, 4, instances=2)
    assert r.bound_per_s() == pytest.approx(2 * 4 / 0.022)
    assert plan.saturation(r) == pytest.approx(2 * 4 / 0.022, rel=0.02)


def point(f: float, p95: float) -> plan.Point:
    s = Summary(f, f, 1, 0, p95, p95, p95, p95, {}, 1.0, f)
    return plan.Point(f, 100 * f, s)


def test_the_knee_is_where_the_slope_crosses_the_threshold() -> None:
    # P95 = 10 ms flat, then slopes (ms per saturation) of 40, 80, 200, 400: threshold 10 × 10 = 100
    points = [point(0.1, 10), point(0.2, 10), point(0.3, 14), point(0.4, 22), point(0.5, 42), point(0.6, 82)]
    knee = plan.find_knee(points, 10.0, k=10)
    assert knee is not None
    # the slopes 80 (at 0.35) and 200 (at 0.45) bracket 100: the crossing is a sixth of the way
    assert knee.fraction == pytest.approx(0.35 + 0.1 / 6)
    assert knee.p95_ms == pytest.approx(14 + 8 * (0.05 + 0.1 / 6) / 0.1)  # on the curve between 0.3 and 0.4
    assert knee.rate == pytest.approx(100 * knee.fraction)
    assert plan.find_knee(points[:3], 10.0, k=10) is None


def test_the_knee_of_mm1_is_where_theory_puts_it() -> None:
    """M/M/1: P95 = ln 20 / (μ − λ), so the slope reaches k × P95(ρ = 0.1) at ρ = 1 − √(0.9 / k)."""
    r = mm1_replica(100.0)
    sat = plan.saturation(r)
    assert sat == pytest.approx(100.0, rel=0.02)
    _, knee = plan.knee(r, plan.Traffic(), 100.0, 60.0, seed=0, k=10.0)  # seeds 0, 1, 2: 0.70, 0.66, 0.69
    assert knee is not None
    assert knee.fraction == pytest.approx(1 - math.sqrt(0.9 / 10), abs=0.045)


def brute_force_minimum(r: plan.Replica, total_rate: float, slo_ms: float) -> int:
    for n in range(1, 100):
        if plan.at_rate(r, plan.Traffic(), total_rate / n, 60.0).p95_ms <= slo_ms:
            return n
    raise AssertionError("no replica count found")


def test_the_fleet_plan_is_the_brute_force_minimum() -> None:
    r = replica({1: 0.010}, 1)
    q = fleet.Question(fleet_rpm=30_000, slo_p95_ms=40.0, growth=0.15)
    sat = plan.saturation(r)
    result = fleet.plan_fleet(r, q, sat, None, 60.0)
    assert result.replicas == result.replicas_steady == brute_force_minimum(r, 30_000 / 60 * 1.15, 40.0)
    assert result.now.replicas == brute_force_minimum(r, 30_000 / 60, 40.0)
    assert result.at_plan.p95_ms <= 40.0
    assert result.rho == pytest.approx(575 / (result.replicas * sat))
    text = fleet.explain(result)
    assert f"At {result.now.replicas} replicas, 30000 req/min" in text
    assert f"+15% takes each replica from ρ = {result.now.rho_before:.2f} to {result.now.rho_after:.2f}" in text


def test_a_burst_needs_more_replicas() -> None:
    r = replica({1: 0.010}, 1)
    q = fleet.Question(fleet_rpm=12_000, slo_p95_ms=50.0, burst_factor=3.0, burst_s=10.0)
    result = fleet.plan_fleet(r, q, plan.saturation(r), None, 60.0)
    assert result.replicas_burst is not None and result.replicas_burst > result.replicas_steady
    assert result.replicas == result.replicas_burst
    assert result.burst_p95_ms is not None and result.burst_p95_ms <= 50.0
    assert 3 * 200 / result.replicas < 100  # riding out 3× needs each replica below its saturation in the burst


def test_an_objective_below_the_unloaded_latency_is_refused() -> None:
    r = replica({1: 0.010}, 1)
    with pytest.raises(plan.PlanError, match="below what one replica gives unloaded"):
        fleet.plan_fleet(r, fleet.Question(fleet_rpm=600, slo_p95_ms=5.0), 100.0, None, 30.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fleet_rpm": 0, "slo_p95_ms": 100}, "fleet req/min > 0"),
        ({"fleet_rpm": 100, "slo_p95_ms": 100, "burst_factor": 3.0}, "a burst is a factor"),
        ({"fleet_rpm": 100, "slo_p95_ms": 100, "replicas_now": 0}, "replicas now must be >= 1"),
    ],
)
def test_bad_questions(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(plan.PlanError, match=message):
        fleet.Question(**kwargs)


def test_a_share_of_bursty_traffic_is_less_bursty_as_the_formula_says() -> None:
    fleet_traffic = plan.Traffic("on_off", cv2=9.0, on_s=0.5)
    times = fleet_traffic.times(100.0, 4000.0, seed=3)
    share = times[np.random.default_rng(4).random(len(times)) < 0.25]  # one of 4 replicas, at random
    gaps = np.diff(share)
    assert gaps.var() / gaps.mean() ** 2 == pytest.approx(fleet_traffic.split(100.0, 4).cv2, rel=0.1)
    assert plan.Traffic().split(100.0, 4) == plan.Traffic()


def test_bursty_traffic_needs_more_replicas_than_poisson() -> None:
    r = replica({1: 0.010}, 1)
    q = fleet.Question(fleet_rpm=30_000, slo_p95_ms=40.0)
    sat = plan.saturation(r)
    poisson = fleet.plan_fleet(r, q, sat, None, 60.0)
    bursty = fleet.plan_fleet(r, q, sat, None, 60.0, traffic=plan.Traffic("on_off", cv2=50.0))  # 6.4 per replica
    assert bursty.replicas > poisson.replicas
