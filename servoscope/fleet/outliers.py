"""Gray replicas: one replica slower than the rest of the fleet, without errors.

The test is a one-sided CUSUM (Page 1954) of a Bernoulli log-likelihood ratio, per replica, on
per-request latency against the rest of the fleet. At each update, each replica brings the
sketch of the requests it answered since the last update; the reference is the pooled sketch of
every *other* replica over the last ``reference_updates`` updates (leave-one-out, so a gray
replica never lifts its own bar, and a slowdown of the whole fleet moves the bar with it).
A request *exceeds* when it lies above the reference's ``quantile`` (P95): on a healthy replica
that is a share ``p0`` = 1 − quantile of its requests, whatever the latency distribution; a gray
replica exceeds more often (a +30% P95 puts ~15–40% of requests above the fleet's P95, for
service-time spreads from wide to narrow). The statistic

    S ← max(0, S + k·ln(p1/p0) + (n − k)·ln((1 − p1)/(1 − p0)))     (n requests, k exceeding)

flags the replica when S ≥ ``threshold``. Under no change S drifts down by KL(p0‖p1) ≈ 0.05 per
request; with p1 = 3·p0 and threshold 20, Wald's bound gives a false-flag chance below
e⁻²⁰ ≈ 2·10⁻⁹ per excursion, against ~0.06 excursions per request: ≪ 1 false flag in an hour of
8 replicas at 20 req/s (600,000 requests). A gray replica whose share is 0.2 gains ~0.13 per
request: ~150 requests (7 s at 20 req/s) to flag. Bins of the 1% sketch count as not exceeding
when they hold the bar itself: the test errs toward fewer flags.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch

from servoscope.telemetry import sketchwire
from servoscope.telemetry.document import StatsDocument
from servoscope.telemetry.windows import RELATIVE_ACCURACY


@dataclass(frozen=True)
class OutlierRule:
    quantile: float = 0.95  # the bar: this quantile of the rest of the fleet
    p1: float = 0.15  # the share above the bar that the test is tuned to catch (3 × p0)
    threshold: float = 20.0  # S at which a replica is flagged (log-likelihood ratio, nats)
    reference_updates: int = 12  # updates pooled for the bar (12 × 5 s: a minute)
    min_reference: int = 200  # requests the rest of the fleet must have answered before a bar is set

    def __post_init__(self) -> None:
        if not (0.5 <= self.quantile < 1 and 1 - self.quantile < self.p1 < 1):
            raise ValueError(f"need 0.5 <= quantile < 1 and 1 - quantile < p1 < 1, got {self.quantile}, {self.p1}")
        if not (self.threshold > 0 and self.reference_updates >= 1 and self.min_reference >= 1):
            raise ValueError("threshold, reference_updates and min_reference must be > 0")

    @property
    def p0(self) -> float:
        return 1 - self.quantile

    def llr(self, n: float, k: float) -> float:
        """The log-likelihood ratio (p1 against p0) of k of n requests above the bar."""
        return k * math.log(self.p1 / self.p0) + (n - k) * math.log((1 - self.p1) / (1 - self.p0))


@dataclass(frozen=True)
class Flag:
    replica: str
    update: int  # the update that flagged it (0-based)
    statistic: float
    share_above: float  # of its requests since its statistic last left 0
    bar_s: float  # the bar at the flagging update


DEFAULT_RULE = OutlierRule()


@dataclass
class _Track:
    statistic: float = 0.0
    n: float = 0.0
    k: float = 0.0
    recent: collections.deque[BaseDDSketch] = field(default_factory=collections.deque)


class GrayDetector:
    """Feed :meth:`update` with each replica's requests since the last update; it answers the
    replicas flagged by that update (each once; :attr:`flagged` keeps them all)."""

    def __init__(self, rule: OutlierRule = DEFAULT_RULE) -> None:
        self.rule = rule
        self.updates = 0
        self.flagged: dict[str, Flag] = {}
        self._tracks: dict[str, _Track] = {}

    def statistic(self, replica: str) -> float:
        track = self._tracks.get(replica)
        return track.statistic if track else 0.0

    def update(self, intervals: Mapping[str, BaseDDSketch]) -> list[Flag]:
        for name, sketch in intervals.items():
            track = self._tracks.setdefault(name, _Track())
            track.recent.append(sketch)
            while len(track.recent) > self.rule.reference_updates:
                track.recent.popleft()
        pooled = _pool(s for name in intervals for s in self._tracks[name].recent)
        new: list[Flag] = []
        for name, sketch in intervals.items():
            flag = self._test(name, sketch, pooled)
            if flag is not None:
                new.append(flag)
        self.updates += 1
        return new

    def _test(self, name: str, sketch: BaseDDSketch, pooled: BaseDDSketch) -> Flag | None:
        track = self._tracks[name]
        own = _pool(track.recent)
        others = sketchwire.subtract(pooled, own) if own.count else pooled
        if others.count < self.rule.min_reference or not sketch.count:
            return None
        bar = others.get_quantile_value(self.rule.quantile)
        if bar is None:
            return None
        n, k = sketch.count, sketchwire.count_above(sketch, bar)
        track.statistic = max(0.0, track.statistic + self.rule.llr(n, k))
        track.n, track.k = (0.0, 0.0) if track.statistic == 0 else (track.n + n, track.k + k)
        if track.statistic < self.rule.threshold or name in self.flagged:
            return None
        flag = Flag(name, self.updates, track.statistic, track.k / track.n if track.n else 0.0, bar)
        self.flagged[name] = flag
        return flag


def _pool(sketches: collections.abc.Iterable[BaseDDSketch]) -> BaseDDSketch:
    out = DDSketch(RELATIVE_ACCURACY)
    for sketch in sketches:
        out.merge(sketch)
    return out


def on_window(
    docs: Mapping[str, StatsDocument], model: str, window: str, rule: OutlierRule = DEFAULT_RULE
) -> list[Flag]:
    """The gray replicas on one window of the replicas' documents: the rule applied to the window as one update."""
    intervals = {}
    for name, doc in docs.items():
        entry = doc.models.get(model)
        text = entry.windows[window].sketches.get("total") if entry else None
        if text is not None:
            intervals[name] = sketchwire.decode(text)
    return GrayDetector(rule).update(intervals)
