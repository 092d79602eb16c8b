"""Saturation, the P95 curve and its knee, for one replica.

Saturation: the answered rate of a replica offered 1.5× its service bound (Poisson), measured
over the run after a warm-up — what a closed-loop saturation measurement finds. The bound is
the slower of the preprocess pool (W workers / mean preprocess time of the mix) and the
instances (N full batches / a full batch's inference and postprocessing).

The knee, precisely: the lowest load λ at which P95 rises at least ``k`` times its low-load
value per saturation's worth of load, dP95/dλ ≥ k · P95(λ₀) / λ_sat (λ₀ = 10% of saturation,
default k = 10): from there one more percent of load adds ≥ k% of the unloaded P95. For M/M/1
that is ρ = 1 − √(0.9/k) (0.70 at k = 10). It is found on a grid of loads (5% of saturation apart, 2.5%
above 90%) with common random numbers (one unit-rate Poisson stream, rescaled), so the curve is
smooth: each step's slope is put at its middle, and the knee is where the slopes cross the
threshold, interpolated between the middles of the first step whose slope (and the next step's)
reach it and the step before.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from servoscope.planner import arrivals
from servoscope.planner.service import ServiceTimes
from servoscope.planner.sim import Admit, SimConfig, SimResult, simulate
from servoscope.planner.summary import Summary, summarize

Say = Callable[[str], None]
KNEE_K = 10.0
LOW_LOAD = 0.1
GRID = (*(round(f, 3) for f in np.arange(0.1, 0.901, 0.05)), 0.925, 0.95, 0.975)
MIN_REQUESTS = 40_000  # per simulated load point, whatever the rate
MAX_DURATION_S = 3600.0


class PlanError(ValueError):
    """A question the planner cannot answer as asked (an objective no replica count meets …)."""


def quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Replica:
    """One replica: its service times, configuration and image mix (a share per class)."""

    service: ServiceTimes
    config: SimConfig
    shares: tuple[float, ...]
    intra_op_threads: int = 0  # what the service times were measured at (0: not known)
    admits: Admit | None = None  # admission at arrival (None: every request enters)

    def bound_per_s(self) -> float:
        mean_pre = self.service.mean_preprocess_s(self.shares)
        full = self.config.batching.max_batch_size
        pool = self.config.preprocess_workers / mean_pre if mean_pre > 0 else math.inf
        instances = self.config.instances * full / self.service.mean_batch_s(full)
        return min(pool, instances)

    def simulate(self, times: np.ndarray, seed: int = 0) -> SimResult:
        """The requests arriving at ``times``, their image classes drawn from the mix."""
        classes = arrivals.draw_classes(len(times), self.shares, seed)
        return simulate(times, classes, self.service, self.config, self.admits, seed)

    def run(self, times: np.ndarray, seed: int = 0) -> Summary:
        duration = float(times[-1]) if len(times) else 0.0
        return summarize(self.simulate(times, seed), warmup_s=warmup_s(duration))


@dataclass(frozen=True)
class Traffic:
    """How requests arrive at a rate: Poisson, or on/off bursts with gaps of squared CV ``cv2``."""

    kind: Literal["poisson", "on_off"] = "poisson"
    cv2: float = 1.0
    on_s: float = 1.0

    def times(self, rate: float, duration_s: float, seed: int) -> np.ndarray:
        if self.kind == "poisson":  # one unit-rate stream, rescaled: common random numbers across rates
            return arrivals.poisson(1.0, rate * duration_s, seed) / rate
        return arrivals.on_off(rate, self.cv2, duration_s, seed, self.on_s)

    def describe(self) -> str:
        return "Poisson" if self.kind == "poisson" else f"on/off bursts, CV² {self.cv2:g}"

    def split(self, rate: float, replicas: int) -> Traffic:
        """One of ``replicas`` equal random shares of this traffic at ``rate``: a share of Poisson is
        Poisson; of on/off, on/off with the same periods at 1/``replicas`` of the on rate — less bursty."""
        if self.kind == "poisson" or replicas == 1:
            return self
        off_s = arrivals.off_period_s(rate, self.cv2, self.on_s)
        return replace(self, cv2=1 + 2 * (rate / replicas) * off_s**2 / (self.on_s + off_s))


def warmup_s(duration_s: float) -> float:
    return min(30.0, 0.1 * duration_s)


def duration_for(rate: float, duration_s: float) -> float:
    """At least ``MIN_REQUESTS`` requests, at most an hour."""
    return min(MAX_DURATION_S, max(duration_s, MIN_REQUESTS / rate))


def at_rate(replica: Replica, traffic: Traffic, rate: float, duration_s: float, seed: int = 0) -> Summary:
    return replica.run(traffic.times(rate, duration_for(rate, duration_s), seed), seed)


def saturation(replica: Replica, duration_s: float = 60.0, seed: int = 0) -> float:
    """Answered requests per second when offered more than the replica can take."""
    offered = 1.5 * replica.bound_per_s()
    duration = duration_for(offered, duration_s)
    result = replica.simulate(arrivals.poisson(offered, duration, seed), seed)
    finished = result.arrival + result.total
    start = warmup_s(duration)
    done = np.count_nonzero((finished >= start) & (finished < duration))
    return done / (duration - start)


@dataclass(frozen=True)
class Point:
    fraction: float  # of saturation
    rate: float
    summary: Summary


@dataclass(frozen=True)
class Knee:
    fraction: float
    rate: float
    p95_ms: float
    threshold: float  # ms of P95 per saturation's worth of load
    k: float


def curve(
    replica: Replica,
    traffic: Traffic,
    sat: float,
    fractions: Sequence[float],
    duration_s: float,
    seed: int = 0,
    say: Say = quiet,
) -> list[Point]:
    points = []
    for f in fractions:
        summary = at_rate(replica, traffic, f * sat, duration_s, seed)
        points.append(Point(f, f * sat, summary))
        say(f"  load {100 * f:5.1f}% of saturation ({f * sat:7.1f} req/s): P95 {summary.p95_ms:8.1f} ms")
    return points


def find_knee(points: Sequence[Point], p95_low_ms: float, k: float = KNEE_K) -> Knee | None:
    """Where the curve's slope first reaches the threshold (and stays there a step more): the slope of
    each step is put at its middle, and the crossing is interpolated between two middles."""
    threshold = k * p95_low_ms
    mids = [(a.fraction + b.fraction) / 2 for a, b in itertools.pairwise(points)]
    slopes = [(b.summary.p95_ms - a.summary.p95_ms) / (b.fraction - a.fraction) for a, b in itertools.pairwise(points)]
    for j, slope in enumerate(slopes):
        if slope < threshold or (j + 1 < len(slopes) and slopes[j + 1] < threshold):
            continue
        f = (
            mids[j]
            if j == 0
            else mids[j - 1] + (threshold - slopes[j - 1]) / (slope - slopes[j - 1]) * (mids[j] - mids[j - 1])
        )
        fractions = [p.fraction for p in points]
        p95 = float(np.interp(f, fractions, [p.summary.p95_ms for p in points]))
        rate = float(np.interp(f, fractions, [p.rate for p in points]))
        return Knee(float(f), rate, p95, threshold, k)
    return None


def knee(
    replica: Replica,
    traffic: Traffic,
    sat: float,
    duration_s: float,
    seed: int = 0,
    k: float = KNEE_K,
    say: Say = quiet,
) -> tuple[list[Point], Knee | None]:
    """The P95 curve on the grid of loads, and its knee."""
    points = curve(replica, traffic, sat, GRID, duration_s, seed, say)
    return points, find_knee(points, points[0].summary.p95_ms, k)
