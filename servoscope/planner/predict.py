"""The planner's answer to "what would P95 be?": :func:`predict`, a pure function of a profile,
a configuration (:class:`~servoscope.planner.knobs.Knobs`), an arrival rate and an image mix —
what the doctor calls for the predicted effect of a fix, and ``servoscope tune`` to seed its search.

Poisson arrivals, simulated with ``requests`` requests (20,000 by default: ~50 ms of CPU; the
same seed gives the same answer). :func:`max_rate` is the highest rate whose predicted P95 meets
an objective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from servoscope.planner import arrivals
from servoscope.planner.knobs import Knobs
from servoscope.planner.plan import Replica, saturation, warmup_s
from servoscope.planner.profile import Profile
from servoscope.planner.service import from_family
from servoscope.planner.sim import SimConfig
from servoscope.planner.summary import summarize
from servoscope.planner.words import batching

REQUESTS = 20_000
MAX_RATE_STEPS = 9  # bisection steps of max_rate: the rate to 0.2% of saturation


@dataclass(frozen=True)
class Prediction:
    arrival_rate_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    saturation_per_s: float  # the answered rate when offered more than the replica can take
    utilization: float  # arrival rate / saturation (ρ)
    stage_wait_ms: dict[str, float]  # mean per stage: queue, preprocess, batch_wait, inference, postprocess


def replica(profile: Profile, knobs: Knobs, image_mix: Mapping[str, float] | None = None) -> Replica:
    """The simulated replica for ``knobs``: the profile's family measured at its instances × threads."""
    family = profile.family(knobs.instances, knobs.intra_op_threads)
    policy = batching(family.batching, knobs.max_batch_size, knobs.max_queue_delay_ms, None, None)
    service = from_family(family, profile.overheads, knobs.max_batch_size)
    weights = [0.0] * len(service.classes)
    for name, share in (image_mix or profile.mix).items():
        weights[service.class_index(name)] += share
    config = SimConfig(knobs.preprocess_workers, knobs.instances, policy)
    return Replica(service, config, tuple(w / sum(weights) for w in weights), knobs.intra_op_threads)


def predict(
    profile: Profile,
    knobs: Knobs,
    arrival_rate: float,
    image_mix: Mapping[str, float] | None = None,
    requests: int = REQUESTS,
    seed: int = 0,
) -> Prediction:
    """P50/P95/P99, saturation and per-stage waits of one replica at ``knobs`` offered ``arrival_rate``
    requests per second (Poisson) of ``image_mix`` (class → share; None: the profile's)."""
    if not (arrival_rate > 0 and math.isfinite(arrival_rate)):
        raise ValueError(f"arrival_rate must be a positive number of requests per second, got {arrival_rate}")
    return _at(replica(profile, knobs, image_mix), arrival_rate, requests, seed)


def _at(r: Replica, rate: float, requests: int, seed: int, sat: float | None = None) -> Prediction:
    sat = sat if sat is not None else saturation(r, duration_s=requests / (1.5 * r.bound_per_s()), seed=seed)
    duration = requests / rate
    times = arrivals.poisson(1.0, requests, seed) / rate  # one unit-rate stream, rescaled: common random numbers
    summary = summarize(r.simulate(times, seed), warmup_s=warmup_s(duration))
    sat = float(sat)
    return Prediction(
        float(rate), summary.p50_ms, summary.p95_ms, summary.p99_ms, sat, float(rate) / sat, dict(summary.stage_mean_ms)
    )


def max_rate(
    profile: Profile,
    knobs: Knobs,
    slo_p95_ms: float,
    image_mix: Mapping[str, float] | None = None,
    requests: int = REQUESTS,
    seed: int = 0,
) -> Prediction | None:
    """The prediction at the highest arrival rate whose P95 meets ``slo_p95_ms`` (bisection between 1%
    of saturation and saturation); None when not even 1% of saturation meets it."""
    r = replica(profile, knobs, image_mix)
    sat = saturation(r, duration_s=requests / (1.5 * r.bound_per_s()), seed=seed)
    low, high = 0.01 * sat, sat
    best = _at(r, low, requests, seed, sat)
    if best.p95_ms > slo_p95_ms:
        return None
    for _ in range(MAX_RATE_STEPS):
        middle = _at(r, (low + high) / 2, requests, seed, sat)
        if middle.p95_ms <= slo_p95_ms:
            low, best = middle.arrival_rate_per_s, middle
        else:
            high = middle.arrival_rate_per_s
    return best
