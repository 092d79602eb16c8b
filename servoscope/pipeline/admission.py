"""Admission control: which requests a model takes in, and which are refused first.

By time (``time``, the default): a request is refused only when it cannot be answered in time — when
its predicted completion (``cost.py``: the work ahead of it over the instances at the measured time
per batch, plus its own service) would pass its deadline, or the service's latency objective
(``slo_p95_ms``) scaled by its priority's share. Below that it queues; above it, it is refused at once,
with ``Retry-After`` set to when it would fit. No ratio to tune, no limit to shrink: a closed loop of
16 clients that the service answers in 100 ms is answered, not turned into a retry storm. Anchors:
Triton's queue policy (a request's timeout), CoDel's target delay, Clipper's and Clockwork's
predictable-latency admission.

By concurrency (``adaptive``): the limit adapts to how long admitted requests *wait* compared with how long they take to
*serve*: each finished request reports its waits (``preprocess_wait`` + ``batch_wait``) and its service
(``preprocess`` + ``inference`` + ``postprocess``). While requests wait less than ``tolerance``
(half) of their own service, the limit may grow; when waits grow past that, it shrinks in
proportion. The ratio needs no baseline and is the same for a thumbnail and a 12-megapixel
photo, so a change in the upload mix is not mistaken for queueing (a latency-based limit, as
Gradient2's, would shrink on every large image). The shape follows Netflix's concurrency-limits
and Envoy's adaptive concurrency filter: multiplicative decrease, additive increase — about one
place per limit's worth of answers, as TCP's congestion window grows — so the limit does not
overshoot and oscillate at hundreds of samples a second. Requests above the limit are refused
at once (429 with Retry-After) instead of waiting in a queue that only grows: the service keeps
answering what it admits fast, and says so about the rest.

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


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """How a model admits: ``mode`` time, adaptive or static; ``max_pending`` bounds every mode."""

    mode: str = "time"
    max_pending: int = 512
    objective_s: float = 0.2  # the service's P95 objective (time mode)

    def __post_init__(self) -> None:
        if self.mode not in ("time", "adaptive", "static"):
            raise ValueError(f"admission mode must be time, adaptive or static, got {self.mode!r}")
        if self.max_pending < 1 or not self.objective_s > 0:
            raise ValueError(f"need max_pending >= 1 and objective_s > 0, got {self.max_pending}, {self.objective_s}")


def budget_s(objective_s: float, priority: Priority, deadline_s: float | None = None) -> float:
    """The time a request has to be answered in: its priority's share of the objective (high all of
    it, normal 90%, low half), or its own deadline (``deadline_s`` from now) if that is sooner."""
    budget = objective_s * SHARE[priority]
    return budget if deadline_s is None else min(budget, deadline_s)


def in_time(predicted_s: float | None, objective_s: float, priority: Priority, deadline_s: float | None = None) -> bool:
    """Whether a request predicted to be answered in ``predicted_s`` is answered within its budget.
    No prediction yet: in time."""
    return predicted_s is None or predicted_s <= budget_s(objective_s, priority, deadline_s)


@dataclass
class GradientLimit:
    """An adaptive concurrency limit. Feed it every finished request's waiting and serving
    seconds with :meth:`update`, and every refusal with :meth:`refused`; read :attr:`limit`."""

    initial: float = 128.0
    min_limit: float = 2.0
    max_limit: float = 512.0
    # waits may reach this share of the service before the limit shrinks; bench/overload.py and
    # a sweep on 2 cores: 0.25 starves the instances (goodput −12%), 1 and 2 let waits double P95
    tolerance: float = 0.5
    smoothing: float = 0.2
    short_samples: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial <= self.max_limit:
            raise ValueError(
                f"need 1 <= min_limit <= initial <= max_limit, got {self.min_limit}, {self.initial}, {self.max_limit}"
            )
        self.estimate = self.initial
        self.wait_ratio = 0.0  # short-run average of wait / service
        self._samples = 0
        self.pressed = False  # a request was refused since the last update

    @property
    def limit(self) -> int:
        return int(self.estimate)

    def update(self, wait_s: float, service_s: float, pending: int) -> None:
        if not (wait_s >= 0 and service_s > 0) or math.isinf(wait_s) or math.isinf(service_s):
            return
        self._samples += 1
        self.wait_ratio += (wait_s / service_s - self.wait_ratio) / min(self._samples, self.short_samples)
        gradient = max(0.5, min(1.0, self.tolerance / self.wait_ratio)) if self.wait_ratio > 0 else 1.0
        if gradient < 1.0:  # queues are building: shrink in proportion, smoothed
            self.estimate = max(self.min_limit, self.estimate * (1 - self.smoothing * (1 - gradient)))
        elif self.pressed or pending >= self.estimate / 2:
            # fine and in use: grow by about one per limit's worth of answers
            self.estimate = min(self.max_limit, self.estimate + 1 / self.estimate)
        self.pressed = False

    def refused(self) -> None:
        """A request was turned away at this limit: demand is there, so the limit is in use."""
        self.pressed = True


def admits(limit: int, pending: int, priority: Priority, count: int = 1) -> bool:
    """Whether a request of ``priority`` carrying ``count`` images may enter when ``pending`` are
    already in. An idle model admits any request: a batch larger than a limit that has shrunk
    under load is never locked out."""
    return pending == 0 or pending + count - 1 < max(1, int(limit * SHARE[priority]))
