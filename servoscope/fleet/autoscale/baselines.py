"""The autoscalers servoscope's policy is measured against, re-implemented from their documented
defaults (each class says where its figures come from). They see what they would see in
production: their own metric, averaged the way their metrics pipeline averages it.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from servoscope.fleet.autoscale.fleetsim import Tick


class _Window:
    """The mean of one metric over the last ``seconds`` of ticks."""

    def __init__(self, seconds: float) -> None:
        self.values: collections.deque[tuple[float, float]] = collections.deque()
        self.seconds = seconds

    def add(self, now: float, value: float) -> None:
        self.values.append((now, value))
        while self.values and self.values[0][0] <= now - self.seconds:
            self.values.popleft()

    def mean(self) -> float:
        return sum(v for _, v in self.values) / len(self.values) if self.values else 0.0


@dataclass
class HPA:
    """Kubernetes' HorizontalPodAutoscaler (autoscaling/v2) with its default ``behavior``
    (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/, "Default Behavior"):

    - sync every 15 s (``--horizontal-pod-autoscaler-sync-period``); tolerance 0.1
      (``--horizontal-pod-autoscaler-tolerance``): no change while |metric/target − 1| ≤ 0.1;
    - desired = ceil(current × metric / target);
    - scale up: no stabilization, at most max(+100%, +4 pods) per 15 s;
    - scale down: stabilization window 300 s (the highest recommendation of the last 300 s), 100% per 15 s.

    The metric is the mean instance utilization of the ready pods over the last 15 s (CPU
    utilization as metrics-server reports it at its default 15 s resolution), ``target`` 0.7.
    """

    target: float = 0.7
    metric_s: float = 15.0
    name: str = "HPA (utilization 70%)"
    period_s: float = 15.0
    tolerance: float = 0.1
    up_percent: float = 100.0
    up_pods: int = 4
    down_window_s: float = 300.0
    _metric: _Window = field(init=False)
    _recommendations: collections.deque[tuple[float, int]] = field(init=False, default_factory=collections.deque)

    def __post_init__(self) -> None:
        self._metric = _Window(self.metric_s)

    def value(self, tick: Tick) -> float:
        return tick.busy_ratio

    def observe(self, tick: Tick) -> None:
        self._metric.add(tick.now, self.value(tick))

    def metric(self, now: float) -> float:
        return self._metric.mean()

    def decide(self, now: float, current: int) -> int:
        ratio = self.metric(now) / self.target
        desired = current if abs(ratio - 1) <= self.tolerance else math.ceil(current * ratio)
        self._recommendations.append((now, desired))
        while self._recommendations[0][0] <= now - self.down_window_s:
            self._recommendations.popleft()
        if desired < current:  # the down stabilization: the highest recommendation of the window
            desired = min(current, max(r for _, r in self._recommendations))
        up_limit = max(math.ceil(current * (1 + self.up_percent / 100)), current + self.up_pods)
        return min(desired, up_limit)


@dataclass
class KEDA(HPA):
    """KEDA's ScaledObject (keda.sh/docs/2.x/reference/scaledobject-spec/) with its defaults on
    top of the HPA it creates (the HPA defaults above): ``pollingInterval`` 30 s — the scaler's
    metric (here: mean queue wait, the metric `servoscope deploy k8s` scales on, against the
    plan's ``queue_wait_target_s``) is read every 30 s and the HPA acts on the last reading;
    ``cooldownPeriod`` 300 s applies only to scaling to zero, which ``minReplicaCount`` ≥ 1 excludes.
    """

    target: float = 0.05
    metric_s: float = 30.0
    name: str = "KEDA (queue wait 50 ms)"
    polling_s: float = 30.0
    _polled: float = field(init=False, default=0.0)
    _next_poll: float = field(init=False, default=0.0)

    def value(self, tick: Tick) -> float:
        return tick.queue_wait_s or 0.0

    def metric(self, now: float) -> float:
        if now >= self._next_poll:
            self._polled = self._metric.mean()
            self._next_poll = now + self.polling_s
        return self._polled


@dataclass
class KPA:
    """Knative's Pod Autoscaler (knative.dev/docs/serving/autoscaling/, config-autoscaler
    defaults): ``tick-interval`` 2 s; concurrency averaged over ``stable-window`` 60 s and over the
    panic window, ``panic-window-percentage`` 10% of it (6 s); desired = ceil(concurrency /
    (target × ``container-concurrency-target-percentage`` 70%)); panic when the panic window's
    desired count ≥ ``panic-threshold-percentage`` 200% of the ready pods — in panic it acts on the
    panic window and never scales down, until a stable window has passed without panic;
    ``max-scale-up-rate`` 1000, ``max-scale-down-rate`` 2 per tick; ``scale-down-delay`` 0.

    ``concurrency_target`` (``container-concurrency-target-default`` is 100, meant for
    web handlers) is given: the planner's concurrency per replica at the objective.
    """

    concurrency_target: float
    name: str = "Knative KPA"
    period_s: float = 2.0
    utilization: float = 0.7
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    max_up_rate: float = 1000.0
    max_down_rate: float = 2.0
    _stable: _Window = field(init=False)
    _panic: _Window = field(init=False)
    _panic_since: float | None = field(init=False, default=None)
    _panic_max: int = field(init=False, default=0)
    _ready: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        self._stable, self._panic = _Window(self.stable_s), _Window(self.panic_s)

    def observe(self, tick: Tick) -> None:
        self._stable.add(tick.now, tick.ongoing)
        self._panic.add(tick.now, tick.ongoing)
        self._ready = max(1, tick.ready)

    def decide(self, now: float, current: int) -> int:
        per_pod = self.concurrency_target * self.utilization
        ready = self._ready
        up, down = math.ceil(self.max_up_rate * ready), math.floor(ready / self.max_down_rate)
        stable = min(up, max(down, math.ceil(self._stable.mean() / per_pod)))
        panic = min(up, max(down, math.ceil(self._panic.mean() / per_pod)))
        if panic / ready >= self.panic_threshold:
            if self._panic_since is None:
                self._panic_max = current
            self._panic_since = now
        elif self._panic_since is not None and now - self._panic_since >= self.stable_s:
            self._panic_since = None
        if self._panic_since is None:
            return stable
        self._panic_max = max(self._panic_max, panic)
        return self._panic_max


@dataclass
class RayServe:
    """Ray Serve's default autoscaling policy (ray 2.60: ``ray/serve/autoscaling_policy.py``,
    ``replica_queue_length_autoscaling_policy`` and ``_apply_delay_logic``; defaults in
    ``ray/serve/config.py`` ``AutoscalingConfig``):

    - desired = current × ongoing / (``target_ongoing_requests`` 2 × current), ongoing requests
      averaged over ``look_back_period_s`` 30 s (``aggregation_function`` mean);
    - ``upscaling_factor`` / ``downscaling_factor`` unset: ``smoothing_factor`` 1.0;
    - a scale-up happens once it has been wanted continuously for ``upscale_delay_s`` 30 s, a
      scale-down for ``downscale_delay_s`` 600 s (timestamps; a change of direction resets).

    The controller loops every 0.1 s (``CONTROL_LOOP_INTERVAL_S``); the simulation decides every
    second, which moves a decision by under a second against delays of 30 and 600 s.
    """

    target_ongoing: float = 2.0
    name: str = "Ray Serve (target 2)"
    period_s: float = 1.0
    look_back_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    _ongoing: _Window = field(init=False)
    _direction: int = field(init=False, default=0)
    _since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._ongoing = _Window(self.look_back_s)

    def observe(self, tick: Tick) -> None:
        self._ongoing.add(tick.now, tick.ongoing)

    def decide(self, now: float, current: int) -> int:
        desired = math.ceil(self._ongoing.mean() / self.target_ongoing)
        direction = (desired > current) - (desired < current)
        if direction == 0:
            self._direction, self._since = 0, None
            return current
        if direction != self._direction:
            self._direction, self._since = direction, now
        delay = self.upscale_delay_s if direction > 0 else self.downscale_delay_s
        assert self._since is not None
        if now - self._since + 1e-6 >= delay:
            self._direction, self._since = 0, None
            return max(1, desired)
        return current
