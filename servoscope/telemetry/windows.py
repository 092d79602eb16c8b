"""Sliding windows over the last few minutes: quantile sketches and counters in time buckets.

Each value lands in the bucket of the current ``bucket_s`` slice of time; a window of W seconds
merges the buckets that started within the last W seconds (so a "1 min" window covers between
W - bucket_s and W seconds of data; ``covered_s`` says exactly how much). A window can also end
``ago_s`` seconds back (the minutes before the last one, as a baseline). Sketches are DDSketch,
1% relative accuracy: quantiles within 1% of the exact value, at any rank, at a fixed cost.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from ddsketch import DDSketch

from servoscope.clock import Clock

RELATIVE_ACCURACY = 0.01
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)


@dataclass(slots=True)
class _Bucket:
    index: int
    sketches: dict[Hashable, DDSketch] = field(default_factory=dict)
    counts: collections.Counter[Hashable] = field(default_factory=collections.Counter)
    spans: dict[Hashable, list[float]] = field(default_factory=dict)  # first and last event time, per key


class Rolling:
    def __init__(self, clock: Clock, bucket_s: float, horizon_s: float) -> None:
        if bucket_s <= 0 or horizon_s < bucket_s:
            raise ValueError(f"need 0 < bucket_s <= horizon_s, got {bucket_s}, {horizon_s}")
        self.clock = clock
        self.bucket_s = bucket_s
        self.horizon_s = horizon_s
        self._buckets: collections.deque[_Bucket] = collections.deque(maxlen=int(horizon_s / bucket_s) + 1)
        self._started = clock.now()

    def _current(self, now: float | None = None) -> _Bucket:
        index = int((self.clock.now() if now is None else now) // self.bucket_s)
        if not self._buckets or self._buckets[-1].index != index:
            self._buckets.append(_Bucket(index))
        return self._buckets[-1]

    def observe(self, key: Hashable, value: float) -> None:
        sketches = self._current().sketches
        sketch = sketches.get(key)
        if sketch is None:
            sketch = sketches[key] = DDSketch(RELATIVE_ACCURACY)
        sketch.add(value)

    def count(self, key: Hashable, amount: float = 1.0) -> None:
        self._current().counts[key] += amount

    def event(self, key: Hashable) -> None:
        """Count one event of ``key`` and keep its time (for :meth:`event_rate`)."""
        now = self.clock.now()
        bucket = self._current(now)
        bucket.counts[key] += 1
        span = bucket.spans.get(key)
        if span is None:
            bucket.spans[key] = [now, now]
        else:
            span[1] = now

    def event_rate(self, key: Hashable, window_s: float, ago_s: float = 0.0) -> float:
        """Events per second from the first to the last in the window: the whole window while they
        keep coming; a window that began before they started (a service just started) or that
        ended after they stopped is not diluted by those idle seconds."""
        n, first, last = 0.0, float("inf"), float("-inf")
        for bucket in self._recent(window_s, ago_s):
            span = bucket.spans.get(key)
            if span is not None:
                n += bucket.counts[key]
                first, last = min(first, span[0]), max(last, span[1])
        if n < 2 or last <= first:
            return n / self.covered_s(window_s, ago_s)
        return (n - 1) / (last - first)

    def _recent(self, window_s: float, ago_s: float = 0.0) -> Iterable[_Bucket]:
        end = self.clock.now() - ago_s
        oldest, newest = int((end - window_s) // self.bucket_s) + 1, int(end // self.bucket_s)
        return (b for b in self._buckets if oldest <= b.index <= newest)

    def covered_s(self, window_s: float, ago_s: float = 0.0) -> float:
        """Seconds of data a window of ``window_s`` (ending ``ago_s`` back) holds now (less just after start)."""
        return max(1e-9, min(window_s, self.clock.now() - ago_s - self._started))

    def merged(self, key: Hashable, window_s: float, ago_s: float = 0.0) -> DDSketch | None:
        merged: DDSketch | None = None
        for bucket in self._recent(window_s, ago_s):
            sketch = bucket.sketches.get(key)
            if sketch is None:
                continue
            if merged is None:
                merged = DDSketch(RELATIVE_ACCURACY)
            merged.merge(sketch)
        return merged

    def total(self, key: Hashable, window_s: float, ago_s: float = 0.0) -> float:
        return sum(b.counts.get(key, 0.0) for b in self._recent(window_s, ago_s))

    def keys(self, window_s: float, ago_s: float = 0.0) -> set[Hashable]:
        found: set[Hashable] = set()
        for bucket in self._recent(window_s, ago_s):
            found.update(bucket.sketches)
            found.update(bucket.counts)
        return found


def summary(sketch: DDSketch | None, quantiles: tuple[float, ...] = QUANTILES) -> dict[str, float] | None:
    """``{"count", "p50", "p90", "p95", "p99", "mean", "max"}`` in the sketch's unit, or None if empty."""
    if sketch is None or sketch.count == 0:
        return None
    out = {"count": sketch.count}
    for q in quantiles:
        out[f"p{q * 100:g}"] = sketch.get_quantile_value(q)
    out["mean"] = sketch.avg
    out["max"] = sketch.get_quantile_value(1.0)
    return out
