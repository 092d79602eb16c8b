"""The traffic an autoscaler is judged on: arrival times (seconds from 0, sorted, seeded), each a
Poisson process whose rate follows a shape over time (by thinning a Poisson stream at the peak rate).

- ``step``: ``base`` for half the trace, then +15%;
- ``spike``: ``base``, with 3 × ``base`` for 60 s in the middle;
- ``diurnal``: a day's ramp compressed into the trace: from 0.5 × ``base`` up to 1.5 × and back;
- ``steady``: ``base`` throughout (an hour: thrashing shows as reversals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Shape = Callable[[np.ndarray], np.ndarray]  # seconds → rate multiplier


@dataclass(frozen=True)
class Trace:
    name: str
    duration_s: float
    shape: Shape
    peak: float  # the largest multiplier

    def arrivals(self, base_per_s: float, seed: int = 0) -> np.ndarray:
        if not (base_per_s > 0 and math.isfinite(base_per_s)):
            raise ValueError(f"the base rate must be > 0 requests/s, got {base_per_s}")
        rng = np.random.default_rng(seed)
        peak = base_per_s * self.peak
        count = int(peak * self.duration_s + 10 * math.sqrt(peak * self.duration_s) + 10)
        times = np.cumsum(rng.exponential(1.0 / peak, size=count))
        times = times[times < self.duration_s]
        keep = rng.random(len(times)) < self.shape(times) / self.peak
        return times[keep]


def step(duration_s: float = 1200.0, growth: float = 0.15) -> Trace:
    return Trace("step +15%", duration_s, lambda t: np.where(t < duration_s / 2, 1.0, 1.0 + growth), 1.0 + growth)


def spike(duration_s: float = 600.0, factor: float = 3.0, length_s: float = 60.0) -> Trace:
    at = duration_s / 2
    return Trace(
        f"spike {factor:g}x {length_s:g} s",
        duration_s,
        lambda t: np.where((t >= at) & (t < at + length_s), factor, 1.0),
        factor,
    )


def diurnal(duration_s: float = 3600.0) -> Trace:
    return Trace("diurnal ramp", duration_s, lambda t: 1.0 - 0.5 * np.cos(2 * np.pi * t / duration_s), 1.5)


def steady(duration_s: float = 3600.0) -> Trace:
    return Trace("steady hour", duration_s, lambda t: np.ones_like(t), 1.0)


def scenarios() -> tuple[Trace, ...]:
    return (step(), spike(), diurnal(), steady())
