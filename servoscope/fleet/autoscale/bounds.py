"""The bounds a policy is judged against on a trace, as opposed to the contenders beside it:

- **the oracle**, the best a reactive policy can do: it knows the trace's rate at every second
  with no measurement lag and orders, at the first second of a change, the replicas for the new
  rate at servoscope's sizing (``utilization``). When the new rate is more than the replicas asked
  for hold at the objective (a spike), it orders those for the new rate *on top of* them: the ones
  there hold the backlog that builds while the new ones start, and a least-outstanding balancer
  sends them nothing new until it is answered. It still pays the start-up: no
  reactive policy is on time for a rise until replicas ordered at its first second serve, so on
  a 3× spike it scores about the start-up in violation seconds;
- **the pre-provisioned bound**: the fewest replicas that, held steady through the whole trace,
  leave no violation second, and what that headroom costs in replica-seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from servoscope.fleet.autoscale.fleetsim import Fleet, Tick, simulate_fleet
from servoscope.fleet.autoscale.score import Score, score
from servoscope.fleet.autoscale.traces import Trace
from servoscope.planner.service import ServiceTimes

Rate = Callable[[float], float]  # seconds → requests a second


def trace_rate(trace: Trace, base_per_s: float) -> Rate:
    """The trace's true rate at a time: what the oracle knows."""
    return lambda now: base_per_s * float(trace.shape(np.asarray([now]))[0])


@dataclass
class Oracle:
    rate: Rate
    capacity_per_s: float  # one replica, P95 within the objective
    utilization: float = 0.9  # servoscope's up_utilization: the same sizing rule, without the lag
    name: str = "oracle (no lag)"
    period_s: float = 1.0
    _before: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not (self.capacity_per_s > 0 and 0 < self.utilization <= 1):
            raise ValueError(
                f"need capacity > 0 and 0 < utilization <= 1, got {self.capacity_per_s}, {self.utilization}"
            )

    def observe(self, tick: Tick) -> None:
        pass  # it needs no telemetry: it knows the rate

    def replicas_for(self, rate: float) -> int:
        return max(1, math.ceil(rate / (self.capacity_per_s * self.utilization)))

    def decide(self, now: float, current: int) -> int:
        rate, before = self.rate(now), self._before
        self._before = rate
        if rate == before:
            return current
        needed = self.replicas_for(rate)
        if before is not None and rate > current * self.capacity_per_s:
            return current + needed  # the ones there now are left with the backlog of the start-up
        return needed


@dataclass(frozen=True)
class Provisioned:
    replicas: int  # held steady through the trace
    score: Score


def pre_provisioned(
    arrivals: np.ndarray,
    service: ServiceTimes,
    fleet: Fleet,
    objective_s: float,
    seed: int = 0,
    shares: tuple[float, ...] = (1.0,),
) -> Provisioned:
    """The fewest replicas, from ``fleet.initial`` up to ``fleet.max_replicas``, that held steady leave
    no violation second (bisection: more replicas never make a second later)."""
    low, high = fleet.initial, fleet.max_replicas

    def run(count: int) -> Score:
        steady = Fleet(fleet.replica, fleet.startup_s, 1, fleet.max_replicas, count, fleet.max_pending)
        return score(simulate_fleet(arrivals, service, steady, Hold(), seed, shares), objective_s)

    best = run(high)
    if best.violation_s:
        raise ValueError(f"even {high} replicas held steady leave {best.violation_s} violation seconds")
    found = Provisioned(high, best)
    while low < high:
        middle = (low + high) // 2
        result = run(middle)
        if result.violation_s:
            low = middle + 1
        else:
            high, found = middle, Provisioned(middle, result)
    return found


class Hold:
    """No autoscaling: the count it starts with."""

    name = "pre-provisioned"
    period_s = math.inf

    def observe(self, tick: Tick) -> None:
        pass

    def decide(self, now: float, current: int) -> int:
        return current
