"""The autoscaling decision, a pure function of what the replicas report: the fleet's mean wait
(``queue`` + ``batch_wait``, the signal of ``servoscope.fleet.k8s.queue_wait``) against the plan's
target, and how busy the model instances are.

- Waiting above the target (beyond the tolerance) adds replicas in proportion, at most doubling the
  fleet in one decision and at least one replica.
- Waiting below the target removes one replica at a time, and only when the others could take its
  work while staying under ``scale_down_busy_ratio`` busy: an idle-looking queue alone is no reason,
  as waiting stays near zero right up to saturation.
- Otherwise the size holds. Ray Serve applies ``upscale_delay_s`` / ``downscale_delay_s`` after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WAIT_S_SUM = "wait_s_sum"  # seconds served requests waited, over the replica's last window
SERVED = "served"  # requests served over that window
BUSY_RATIO = "busy_ratio"  # share of that window its model instances were running batches (0 … 1)
SIGNALS: tuple[str, ...] = (WAIT_S_SUM, SERVED, BUSY_RATIO)


@dataclass(frozen=True)
class ReplicaSignal:
    wait_s_sum: float
    served: float
    busy_ratio: float

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> ReplicaSignal:
        return cls(metrics.get(WAIT_S_SUM, 0.0), metrics.get(SERVED, 0.0), metrics.get(BUSY_RATIO, 0.0))


@dataclass(frozen=True)
class ScalingRule:
    wait_target_s: float
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1  # no change while the wait is within ±10 % of the target
    max_step_up_ratio: float = 2.0  # at most doubling in one decision
    scale_down_busy_ratio: float = 0.6  # the busy share the remaining replicas may reach after a removal

    def __post_init__(self) -> None:
        if self.wait_target_s <= 0:
            raise ValueError(f"wait_target_s must be > 0, got {self.wait_target_s}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas} and {self.max_replicas}")


def mean_wait_s(signals: Sequence[ReplicaSignal]) -> float:
    """The fleet's mean wait per served request (a ratio of sums: exact across replicas)."""
    served = sum(s.served for s in signals)
    return sum(s.wait_s_sum for s in signals) / served if served > 0 else 0.0


def desired_replicas(current: int, signals: Sequence[ReplicaSignal], rule: ScalingRule) -> int:
    """How many replicas the fleet should run, given ``current`` and one signal per running replica."""
    if not signals:
        return _bounded(current, rule)
    ratio = mean_wait_s(signals) / rule.wait_target_s
    if ratio > 1 + rule.tolerance:
        step = min(ratio, rule.max_step_up_ratio)
        return _bounded(max(current + 1, math.ceil(current * step)), rule)
    if ratio < 1 - rule.tolerance and current > 1:
        busy_after = sum(s.busy_ratio for s in signals) / (current - 1)
        if busy_after <= rule.scale_down_busy_ratio:
            return _bounded(current - 1, rule)
    return _bounded(current, rule)


def _bounded(replicas: int, rule: ScalingRule) -> int:
    return max(rule.min_replicas, min(rule.max_replicas, replicas))
