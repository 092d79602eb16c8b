"""What the autoscalers are told about one replica, from the planner's simulation of its profile:
the rate it answers with P95 within the objective, and the requests it then holds in progress."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servoscope.planner import arrivals
from servoscope.planner.service import ServiceTimes
from servoscope.planner.sim import SimConfig, simulate

PROBE_S = 120.0
STEPS = 12


@dataclass(frozen=True)
class Capacity:
    per_s: float  # requests a second one replica answers with P95 within the objective
    ongoing: float  # requests in progress on it then (Little's law: rate × mean latency)
    p95_s: float  # its P95 there


def at_objective(
    service: ServiceTimes, config: SimConfig, objective_s: float, seed: int = 0, shares: tuple[float, ...] = (1.0,)
) -> Capacity:
    """The highest Poisson rate (to 1/2^``STEPS`` of the bound) at which one replica's P95 ≤ objective,
    image-size classes drawn by ``shares``."""
    batch = config.batching.max_batch_size
    bound = min(
        config.preprocess_workers / service.mean_preprocess_s(shares),
        config.instances * batch / service.mean_batch_s(batch),
    )
    low, high, best = 0.0, bound, None
    for _ in range(STEPS):
        rate = (low + high) / 2
        result = _run(service, config, rate, seed, shares)
        total = result[np.isfinite(result)]
        p95 = float(np.quantile(result, 0.95)) if len(total) == len(result) and len(result) else float("inf")
        if p95 <= objective_s:
            low, best = rate, Capacity(rate, rate * float(total.mean()), p95)
        else:
            high = rate
    if best is None:
        raise ValueError(f"one replica cannot meet a P95 of {objective_s * 1000:g} ms at any rate")
    return best


def _run(service: ServiceTimes, config: SimConfig, rate: float, seed: int, shares: tuple[float, ...]) -> np.ndarray:
    times = arrivals.poisson(rate, PROBE_S, seed)
    result = simulate(times, arrivals.draw_classes(len(times), shares, seed), service, config, seed=seed)
    keep = result.arrival >= 0.1 * PROBE_S
    return np.where(result.refused[keep], np.inf, result.total[keep])
