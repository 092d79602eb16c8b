"""The comparison: every policy through every trace, on the same arrivals, from the same start.

Each run starts right-sized for the base rate (the planner's count at ``up_utilization``), so a
policy is judged on how it follows the traffic, not on where it starts. Every policy is told
what it would be told in production: servoscope's the planner's capacity; KPA its concurrency
target from the same capacity (Little's law); Ray Serve its default ``target_ongoing_requests``
of 2, and, in a second row, the planner's concurrency instead; HPA and KEDA their targets; the
HPA that ``servoscope deploy k8s`` writes runs from its own manifest (:mod:`.hpa_v2`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servoscope.fleet.autoscale import baselines, bounds
from servoscope.fleet.autoscale.capacity import Capacity, at_objective
from servoscope.fleet.autoscale.fleetsim import Fleet, Policy, simulate_fleet
from servoscope.fleet.autoscale.hpa_v2 import generated
from servoscope.fleet.autoscale.policy import ObjectivePolicy
from servoscope.fleet.autoscale.score import Score, score
from servoscope.fleet.autoscale.traces import Trace
from servoscope.fleet.plan import FleetPlan
from servoscope.models.config import BatchingConfig
from servoscope.planner import profile
from servoscope.planner.service import ServiceTimes, by_size, from_family
from servoscope.planner.sim import SimConfig

FLEET_RPM = 10_000.0  # the fleet: 10,000 requests a minute
OBJECTIVE_S = 0.25
MAX_REPLICAS = 64
# The plan a user of this fleet would write: the default plan, with room for the fleet's largest size.
PLAN = FleetPlan.model_validate({"replicas": {"max": MAX_REPLICAS}})


def example_replica() -> tuple[ServiceTimes, SimConfig]:
    """A replica in the shape of EfficientNet-Lite0 on a 2-core CPU (not measured here: written to
    saturate near 35 req/s, as the service measured on this kind of machine): 2 preprocess workers
    at 10 ms, one instance, batches up to 8 taking 30–170 ms, each stage spread ±20%."""

    def spread(mean_s: float) -> list[float]:
        return [mean_s * (0.8 + 0.4 * i / 19) for i in range(20)]

    inference = {1: 0.030, 2: 0.050, 4: 0.090, 8: 0.170}
    service = ServiceTimes(
        ("320x240",),
        (np.asarray(spread(0.010)),),
        by_size({b: spread(s) for b, s in inference.items()}, 8),
        by_size({1: [0.0005]}, 8),
        ingest_s=0.0005,
        respond_s=0.0003,
        dispatch=np.asarray([0.0005]),
    )
    return service, SimConfig(2, 1, BatchingConfig(max_batch_size=8, max_queue_delay_s=0.005, max_queue_size=256))


def profile_replica(path: Path) -> tuple[ServiceTimes, SimConfig, tuple[float, ...]]:
    """A replica from a ``servoscope profile`` file: its first family, at the batching it was measured
    with, and the profile's image mix."""
    measured = profile.load(path)
    family = measured.family()
    service = from_family(family, measured.overheads, family.batching.max_batch_size)
    shares = [0.0] * len(service.classes)
    for name, share in measured.mix.items():
        shares[service.class_index(name)] += share
    return service, SimConfig(family.preprocess_workers, family.instances, family.batching), tuple(shares)


PolicyMaker = Callable[[Capacity, float], Policy]

POLICIES: tuple[PolicyMaker, ...] = (
    lambda cap, objective_s: ObjectivePolicy(cap.per_s, objective_s),
    lambda cap, objective_s: baselines.HPA(),
    lambda cap, objective_s: baselines.KEDA(),
    lambda cap, objective_s: baselines.KPA(cap.ongoing),
    lambda cap, objective_s: baselines.RayServe(),
    lambda cap, objective_s: baselines.RayServe(target_ongoing=cap.ongoing, name="Ray Serve (planner's target)"),
    lambda cap, objective_s: generated(PLAN),
)


@dataclass(frozen=True)
class Row:
    trace: str
    policy: str
    score: Score
    cpu_requests: int


@dataclass(frozen=True)
class Setup:
    """One comparison's fixed parts: the replica, its capacity, the fleet every run starts from."""

    service: ServiceTimes
    capacity: Capacity
    fleet: Fleet
    base_per_s: float
    objective_s: float
    seed: int
    shares: tuple[float, ...]

    def run(self, times: np.ndarray, policy: Policy) -> Score:
        result = simulate_fleet(times, self.service, self.fleet, policy, self.seed, self.shares)
        return score(result, self.objective_s)


def setup(
    startup_s: float,
    service: ServiceTimes,
    config: SimConfig,
    objective_s: float = OBJECTIVE_S,
    fleet_rpm: float = FLEET_RPM,
    seed: int = 0,
    shares: tuple[float, ...] = (1.0,),
) -> Setup:
    """The fleet right-sized for ``fleet_rpm``; image-size classes drawn by ``shares`` (one per class)."""
    cap = at_objective(service, config, objective_s, seed, shares)
    base = fleet_rpm / 60.0
    initial = math.ceil(base / (cap.per_s * ObjectivePolicy(cap.per_s, objective_s).up_utilization))
    fleet = Fleet(config, startup_s=startup_s, min_replicas=1, max_replicas=MAX_REPLICAS, initial=initial)
    return Setup(service, cap, fleet, base, objective_s, seed, shares)


def compare(traces: Sequence[Trace], run: Setup, policies: Sequence[PolicyMaker] = POLICIES) -> list[Row]:
    """Every policy through every trace."""
    rows = []
    for trace in traces:
        times = trace.arrivals(run.base_per_s, run.seed)
        for make in policies:
            policy = make(run.capacity, run.objective_s)
            rows.append(Row(trace.name, policy.name, run.run(times, policy), len(times)))
    return rows


def oracle(traces: Sequence[Trace], run: Setup) -> list[Row]:
    """The oracle (:class:`.bounds.Oracle`) through every trace: the floor of every reactive policy."""
    rows = []
    for trace in traces:
        times = trace.arrivals(run.base_per_s, run.seed)
        policy = bounds.Oracle(bounds.trace_rate(trace, run.base_per_s), run.capacity.per_s)
        rows.append(Row(trace.name, policy.name, run.run(times, policy), len(times)))
    return rows


def provisioned(trace: Trace, run: Setup) -> bounds.Provisioned:
    """The fewest replicas held steady through ``trace`` that leave no violation second."""
    times = trace.arrivals(run.base_per_s, run.seed)
    return bounds.pre_provisioned(times, run.service, run.fleet, run.objective_s, run.seed, run.shares)
