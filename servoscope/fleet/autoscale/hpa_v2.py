"""An autoscaling/v2 HorizontalPodAutoscaler run from its manifest: the controller's algorithm
(kubernetes pkg/controller/podautoscaler/horizontal.go) on the object's own metric target,
replica bounds and ``behavior``, so that the HPA ``servoscope deploy k8s`` writes is simulated as
written (:func:`generated`), not as a copy of its numbers.

Every ``sync_s`` (``--horizontal-pod-autoscaler-sync-period``, 15 s):

1. **the metrics**: each Pods metric's average over the pods that report it, as the Prometheus
   Adapter serves it (a rate over ``queue_wait.WINDOW``, 1 min). The arrival rate
   (``arrival_rate.RATE_METRIC``): each ready pod's arrivals of the last minute / 60 s (Prometheus's
   ``rate`` divides by the window, so a pod younger than it reads low; the pods of the first
   minute of a run count as serving before it); the queue wait
   (``queue_wait.WAIT_METRIC``): the mean wait of the requests of the last minute. A pod still
   starting reports nothing (missing);
2. **the proposal** (``calcPlainMetricReplicas``): usage ratio r = metric / target; within
   ``tolerance`` (0.1) of 1 the count stays; with no pod missing, ceil(r × pods reporting); with
   some missing, they count as 0 when r > 1 and as the target when r < 1, the ratio is recomputed
   over every pod, and the count stays if that is within tolerance or changes direction; with
   several metrics, the largest proposal (``computeReplicasForMetrics``);
3. **stabilization** (``stabilizeRecommendationWithBehaviors``): the count moves up no further than
   the lowest proposal of the scale-up window, and down no further than the highest of the
   scale-down window;
4. **rate limits** (``convertDesiredReplicasWithBehaviorRate``): each policy proposes from the count
   at the start of its period (the scale events of the last ``periodSeconds`` undone); ``selectPolicy``
   Max takes the largest change, Min the smallest, Disabled none; then min/max replicas.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from servoscope.fleet.autoscale.fleetsim import TICK_S, Tick
from servoscope.fleet.k8s import arrival_rate, autoscaling, queue_wait
from servoscope.fleet.k8s.target import Target
from servoscope.fleet.k8s.yamltext import dump
from servoscope.fleet.plan import FleetPlan

SYNC_S = 15.0
TOLERANCE = 0.1


class ManifestError(ValueError):
    """An HPA object this simulation cannot run (not autoscaling/v2, no Pods metric …)."""


@dataclass(frozen=True)
class Rule:
    kind: str  # "Pods" or "Percent"
    value: int
    period_s: float


@dataclass(frozen=True)
class PodsMetric:
    name: str  # arrival_rate.RATE_METRIC or queue_wait.WAIT_METRIC: the signals the simulated fleet has
    target: float  # averageValue


SIGNALS = (arrival_rate.RATE_METRIC, queue_wait.WAIT_METRIC)


@dataclass(frozen=True)
class Direction:
    window_s: float  # stabilizationWindowSeconds
    select: str  # Max, Min or Disabled
    rules: tuple[Rule, ...]


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("1m", "30s") in seconds."""
    found = re.fullmatch(r"(\d+)([smh])", duration)
    if not found:
        raise ManifestError(f"a duration of one unit (30s, 1m, 1h) was expected, got {duration!r}")
    return int(found.group(1)) * {"s": 1, "m": 60, "h": 3600}[found.group(2)]


def quantity(text: str) -> float:
    """A Kubernetes quantity ("50m", "0.05", "2") as a number."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(text))
    if not found:
        raise ManifestError(f"a quantity such as 50m or 0.05 was expected, got {text!r}")
    return float(found.group(1)) / (1000 if found.group(2) else 1)


def _direction(behavior: dict[str, Any], key: str) -> Direction:
    try:
        spec = behavior[key]
        rules = tuple(Rule(p["type"], int(p["value"]), float(p["periodSeconds"])) for p in spec["policies"])
        return Direction(float(spec["stabilizationWindowSeconds"]), spec.get("selectPolicy", "Max"), rules)
    except (KeyError, TypeError) as exc:
        raise ManifestError(
            f"behavior.{key} lacks {exc}: every field is needed (the simulation adds no default)"
        ) from None


def _pods_metrics(spec: dict[str, Any]) -> tuple[PodsMetric, ...]:
    metrics = spec.get("metrics", [])
    pods = [m.get("pods", {}) for m in metrics if m.get("type") == "Pods"]
    if not pods or len(pods) != len(metrics) or any(p.get("target", {}).get("type") != "AverageValue" for p in pods):
        raise ManifestError("Pods metrics with AverageValue targets were expected, and no other kind")
    read = tuple(PodsMetric(p["metric"]["name"], quantity(p["target"]["averageValue"])) for p in pods)
    unknown = [m.name for m in read if m.name not in SIGNALS]
    if unknown:
        raise ManifestError(f"metrics {unknown} are not simulated (the fleet has {', '.join(SIGNALS)})")
    return read


@dataclass
class HPAv2:
    """The controller for one HPA object (``from_manifest``) whose metrics are rates over ``metric_s``."""

    metrics: tuple[PodsMetric, ...]
    min_replicas: int
    max_replicas: int
    up: Direction
    down: Direction
    metric_s: float
    name: str = "HPA as generated"
    period_s: float = SYNC_S
    tolerance: float = TOLERANCE
    _waits: collections.deque[tuple[float, float, float]] = field(init=False, default_factory=collections.deque)
    _arrivals: collections.deque[tuple[float, Mapping[int, int]]] = field(init=False, default_factory=collections.deque)
    _ready: int = field(init=False, default=0)
    _since: float | None = field(init=False, default=None)  # the run's start: its first pods served before it
    _proposals: list[tuple[float, int]] = field(init=False, default_factory=list)
    _events: list[tuple[float, int]] = field(init=False, default_factory=list)  # (time, signed change)

    @classmethod
    def from_manifest(cls, document: dict[str, Any], metric_s: float) -> HPAv2:
        if document.get("apiVersion") != "autoscaling/v2" or document.get("kind") != "HorizontalPodAutoscaler":
            raise ManifestError("an autoscaling/v2 HorizontalPodAutoscaler was expected")
        spec = document["spec"]
        behavior = spec.get("behavior", {})
        return cls(
            metrics=_pods_metrics(spec),
            min_replicas=int(spec.get("minReplicas", 1)),
            max_replicas=int(spec["maxReplicas"]),
            up=_direction(behavior, "scaleUp"),
            down=_direction(behavior, "scaleDown"),
            metric_s=metric_s,
        )

    def observe(self, tick: Tick) -> None:
        if tick.queue_wait_s is not None:
            self._waits.append((tick.now, tick.queue_wait_s, tick.arrived_per_s))
        self._arrivals.append((tick.now, tick.arrived_by_replica))
        if self._since is None:
            self._since = tick.now - TICK_S
        for kept in (self._waits, self._arrivals):
            while kept and kept[0][0] <= tick.now - self.metric_s:
                kept.popleft()
        self._ready = tick.ready

    def value(self, name: str) -> float:
        """The Pods metric ``name`` averaged over the pods that report it."""
        if name == queue_wait.WAIT_METRIC:
            weight = sum(n for _, _, n in self._waits)
            return sum(w * n for _, w, n in self._waits) / weight if weight else 0.0
        reporting = self._arrivals[-1][1] if self._arrivals else {}
        if not reporting:
            return 0.0
        arrived = sum(counts.get(pod, 0) for _, counts in self._arrivals for pod in reporting)
        started = self._since if self._since is not None else 0.0
        window_s = min(self.metric_s, self._arrivals[-1][0] - started)
        return arrived / window_s / len(reporting)

    def proposal(self, current: int) -> int:
        return max(self._proposal(self.value(m.name) / m.target, current) for m in self.metrics)

    def _proposal(self, ratio: float, current: int) -> int:
        reporting = min(self._ready, current)
        missing = current - reporting
        if abs(ratio - 1) <= self.tolerance:
            return current
        if not missing:
            return math.ceil(ratio * reporting)
        filled = ratio * reporting + (0 if ratio > 1 else missing)
        again = filled / current
        if abs(again - 1) <= self.tolerance or (again > 1) != (ratio > 1):
            return current
        return math.ceil(again * current)

    def decide(self, now: float, current: int) -> int:
        desired = self.proposal(current)
        stabilized = self._stabilize(now, current, desired)
        wanted = self._limit(now, current, stabilized)
        if wanted != current:
            self._events.append((now, wanted - current))
        longest = max(rule.period_s for rule in (*self.up.rules, *self.down.rules, Rule("Pods", 0, 0.0)))
        self._events = [(t, change) for t, change in self._events if t > now - longest]
        return wanted

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_floor = min([r for t, r in self._proposals if t > now - self.up.window_s] + [desired])
        down_ceiling = max([r for t, r in self._proposals if t > now - self.down.window_s] + [desired])
        self._proposals.append((now, desired))
        keep = max(self.up.window_s, self.down.window_s)
        self._proposals = [(t, r) for t, r in self._proposals if t > now - keep]
        return min(max(current, up_floor), down_ceiling)

    def _period_start(self, now: float, current: int, period_s: float) -> int:
        return current - sum(change for t, change in self._events if t > now - period_s)

    def _limit(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            limit = self._rate_limit(now, current, self.up, +1)
            return min(desired, max(limit, current), self.max_replicas)
        if desired < current:
            limit = self._rate_limit(now, current, self.down, -1)
            return max(desired, min(limit, current), self.min_replicas)
        return current

    def _rate_limit(self, now: float, current: int, direction: Direction, sign: int) -> int:
        if direction.select == "Disabled" or not direction.rules:
            return current
        proposals = []
        for rule in direction.rules:
            start = self._period_start(now, current, rule.period_s)
            if rule.kind == "Pods":
                proposals.append(start + sign * rule.value)
            elif sign > 0:
                proposals.append(math.ceil(start * (1 + rule.value / 100)))
            else:
                proposals.append(int(start * (1 - rule.value / 100)))
        largest_change = max if sign > 0 else min
        smallest_change = min if sign > 0 else max
        return (largest_change if direction.select == "Max" else smallest_change)(proposals)


def generated(plan: FleetPlan) -> HPAv2:
    """The HPA that ``servoscope deploy k8s`` writes for ``plan``, read back from its YAML."""
    document = yaml.safe_load(dump(autoscaling.hpa(plan, Target())))
    return HPAv2.from_manifest(document, seconds(queue_wait.WINDOW))
