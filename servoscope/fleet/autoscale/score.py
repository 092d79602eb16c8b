"""How an autoscaler did: objective-violation seconds, replica-seconds, reversals an hour.

- a **violation second** is a second of arrivals whose P95 latency is above the objective
  (a refused request counts as infinitely late); seconds with no arrival are not counted;
- **replica-seconds** count every replica from the moment it is asked for (starting ones too)
  until it is removed;
- a **reversal** is a scaling action in the opposite direction to the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from servoscope.fleet.autoscale.fleetsim import FleetResult


@dataclass(frozen=True)
class Score:
    violation_s: int
    replica_s: float
    reversals_per_h: float
    changes: int
    peak_replicas: int


def violation_seconds(arrival: np.ndarray, total: np.ndarray, objective_s: float) -> int:
    if not len(arrival):
        return 0
    second = arrival.astype(np.int64)
    order = np.lexsort((total, second))
    sec, lat = second[order], total[order]
    starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
    counts = np.diff(np.r_[starts, len(sec)])
    at95 = starts + np.ceil(0.95 * counts).astype(np.int64) - 1  # the nearest-rank P95 of each second
    return int(np.count_nonzero(lat[at95] > objective_s))


def reversals(targets: list[tuple[float, int]]) -> int:
    counts = [c for _, c in targets]
    signs = [np.sign(b - a) for a, b in pairwise(counts) if b != a]
    return sum(1 for a, b in pairwise(signs) if a != b)


def score(result: FleetResult, objective_s: float) -> Score:
    hours = result.duration_s / 3600.0
    return Score(
        violation_s=violation_seconds(result.arrival, result.total, objective_s),
        replica_s=result.replica_s,
        reversals_per_h=reversals(result.targets) / hours if hours else 0.0,
        changes=len(result.targets) - 1,
        peak_replicas=max(c for _, c in result.targets),
    )
