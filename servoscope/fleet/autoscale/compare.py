"""The comparison: every policy through every trace, on the same arrivals, from the same start.

Each run starts right-sized for the base rate (the planner's count at ``up_utilization``), so a
policy is judged on how it follows the traffic, not on where it starts. Every policy is told
what it would be told in production: servoscope's the planner's capacity; KPA its concurrency
target from the same capacity (Little's law); Ray Serve its default ``target_ongoing_requests``
of 2, and, in a second row, the planner's concurrency instead; HPA and KEDA their targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servoscope.fleet.autoscale import baselines
from servoscope.fleet.autoscale.capacity import Capacity, at_objective
from servoscope.fleet.autoscale.fleetsim import Fleet, Policy, simulate_fleet
from servoscope.fleet.autoscale.policy import ObjectivePolicy
from servoscope.fleet.autoscale.score import Score, score
from servoscope.fleet.autoscale.traces import Trace
from servoscope.models.config import BatchingConfig
from servoscope.planner import profile
from servoscope.planner.service import ServiceTimes, by_size, from_family
from servoscope.planner.sim import SimConfig

FLEET_RPM = 10_000.0  # the fleet: 10,000 requests a minute
OBJECTIVE_S = 0.25


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
)


@dataclass(frozen=True)
class Row:
    trace: str
    policy: str
    score: Score
    cpu_requests: int


def compare(
    traces: Sequence[Trace],
    startup_s: float,
    service: ServiceTimes,
    config: SimConfig,
    objective_s: float = OBJECTIVE_S,
    fleet_rpm: float = FLEET_RPM,
    policies: Sequence[PolicyMaker] = POLICIES,
    seed: int = 0,
    shares: tuple[float, ...] = (1.0,),
) -> tuple[Capacity, list[Row]]:
    """Every policy through every trace; image-size classes drawn by ``shares`` (one per class of ``service``)."""
    cap = at_objective(service, config, objective_s, seed, shares)
    base = fleet_rpm / 60.0
    initial = math.ceil(base / (cap.per_s * ObjectivePolicy(cap.per_s, objective_s).up_utilization))
    fleet = Fleet(config, startup_s=startup_s, min_replicas=1, max_replicas=64, initial=initial)
    rows = []
    for trace in traces:
        times = trace.arrivals(base, seed)
        for make in policies:
            policy = make(cap, objective_s)
            result = simulate_fleet(times, service, fleet, policy, seed, shares)
            rows.append(Row(trace.name, policy.name, score(result, objective_s), len(times)))
    return cap, rows
