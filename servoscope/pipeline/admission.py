"""Admission control: how many requests a model takes in at once, and which are refused first.

The limit adapts to the latency the model's pipeline actually gives, after Netflix's
concurrency-limits *Gradient2* (Envoy's adaptive concurrency filter works alike): a no-load
baseline of the in-pipeline time, and a short-run average as the present; while the present
stays within ``tolerance`` × the baseline, the limit may grow; when queues build and the
present drifts above it, the limit shrinks in proportion. Growth is additive — about one
place per limit's worth of answers, as TCP's congestion window grows — so the limit does not
overshoot and oscillate at hundreds of samples a second. Requests above
the limit are refused at once (429 with Retry-After) instead of waiting in a queue that only
grows: the service keeps answering what it admits fast, and says so about the rest.

Priorities share the limit: ``low`` is admitted only below ``LOW_SHARE`` of it, ``normal``
below ``NORMAL_SHARE``, ``high`` up to all of it — so under pressure low goes first, high last.
Everything here is a pure function of the samples given: tests drive it without a server.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Priority(enum.IntEnum):
    HIGH = 0
    NORMAL = 1
    LOW = 2

    @classmethod
    def parse(cls, raw: str | None) -> Priority:
        if raw is None or raw == "":
            return cls.NORMAL
        try:
            return cls[raw.strip().upper()]
        except KeyError:
            raise ValueError(f"priority must be high, normal or low, got {raw!r}") from None


LOW_SHARE = 0.5
NORMAL_SHARE = 0.9
SHARE = {Priority.HIGH: 1.0, Priority.NORMAL: NORMAL_SHARE, Priority.LOW: LOW_SHARE}


@dataclass
class GradientLimit:
    """An adaptive concurrency limit. Feed it every finished request's in-pipeline seconds and the
    number in flight with :meth:`update`; read :attr:`limit`.

    The baseline (what a request takes when nothing queues) starts from the first request and
    then learns from requests that finished while at most ``quiet_in_flight`` were in flight, or
    faster than the baseline — so a service that starts under a flood still has one, and it
    cannot drift upwards under sustained overload (Gradient2's long average can). If the model
    really became slower, the limit falls until the pipeline is quiet, and the baseline is
    re-learnt there.
    """

    initial: float = 128.0
    min_limit: float = 2.0
    max_limit: float = 512.0
    quiet_in_flight: int = 2
    tolerance: float = 2.0  # how far the present may rise above the baseline before the limit shrinks
    smoothing: float = 0.2
    short_samples: int = 10
    baseline_samples: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial <= self.max_limit:
            raise ValueError(f"need 1 <= min_limit <= initial <= max_limit, got {self.min_limit}, {self.initial}, {self.max_limit}")
        self.estimate = self.initial
        self.short_s = 0.0
        self.baseline_s = 0.0
        self._short_n = 0
        self._baseline_n = 0
        self.pressed = False  # a request was refused since the last update

    @property
    def limit(self) -> int:
        return int(self.estimate)

    def update(self, latency_s: float, in_flight: int) -> None:
        if not latency_s > 0 or math.isinf(latency_s):
            return
        self._short_n += 1
        self.short_s += (latency_s - self.short_s) / min(self._short_n, self.short_samples)
        if self._baseline_n == 0 or in_flight <= self.quiet_in_flight or latency_s < self.baseline_s:
            self._baseline_n += 1
            self.baseline_s += (latency_s - self.baseline_s) / min(self._baseline_n, self.baseline_samples)
        gradient = max(0.5, min(1.0, self.tolerance * self.baseline_s / self.short_s))
        if gradient < 1.0:  # queues are building: shrink in proportion, smoothed
            self.estimate = max(self.min_limit, self.estimate * (1 - self.smoothing * (1 - gradient)))
        elif self.pressed or in_flight >= self.estimate / 2:  # fine and in use: grow by about one per limit's worth of answers
            self.estimate = min(self.max_limit, self.estimate + 1 / self.estimate)
        self.pressed = False

    def refused(self) -> None:
        """A request was turned away at this limit: demand is there, so the limit is in use."""
        self.pressed = True


def admits(limit: int, in_flight: int, priority: Priority) -> bool:
    """Whether a request of ``priority`` may enter when ``in_flight`` are already in."""
    return in_flight < max(1, int(limit * SHARE[priority]))
