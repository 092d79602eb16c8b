"""Rolling windows: values land in time buckets; windows merge only recent buckets."""

from __future__ import annotations

import pytest

from servoscope.clock import ManualClock
from servoscope.telemetry.windows import Rolling, summary


def test_quantiles_within_relative_accuracy() -> None:
    clock = ManualClock(1000.0)
    rolling = Rolling(clock, bucket_s=5, horizon_s=300)
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms … 1 s
    for v in values:
        rolling.observe("k", v)
    s = summary(rolling.merged("k", 60))
    assert s is not None and s["count"] == 1000
    for q, exact in ((50, 0.5), (90, 0.9), (95, 0.95), (99, 0.99)):
        assert s[f"p{q}"] == pytest.approx(exact, rel=0.02)
    assert s["max"] == pytest.approx(1.0, rel=0.02)


def test_old_buckets_leave_the_window() -> None:
    clock = ManualClock(0.0)
    rolling = Rolling(clock, bucket_s=5, horizon_s=300)
    rolling.observe("k", 10.0)
    rolling.count("c", 3)
    clock.advance(30)
    rolling.observe("k", 1.0)
    rolling.count("c", 2)
    assert summary(rolling.merged("k", 60))["count"] == 2
    assert rolling.total("c", 60) == 5
    clock.advance(45)  # the first values are now 75 s old: out of the 1 min window, in the 5 min one
    assert summary(rolling.merged("k", 60))["count"] == 1
    assert summary(rolling.merged("k", 60))["max"] == pytest.approx(1.0, rel=0.02)
    assert rolling.total("c", 60) == 2
    assert rolling.total("c", 300) == 5
    clock.advance(400)  # everything beyond the horizon
    assert rolling.merged("k", 300) is None
    assert rolling.total("c", 300) == 0


def test_covered_seconds_grow_until_the_window_is_full() -> None:
    clock = ManualClock(0.0)
    rolling = Rolling(clock, bucket_s=1, horizon_s=300)
    clock.advance(20)
    assert rolling.covered_s(60) == pytest.approx(20)
    clock.advance(100)
    assert rolling.covered_s(60) == pytest.approx(60)


def test_keys_and_empty_summary() -> None:
    clock = ManualClock(0.0)
    rolling = Rolling(clock, bucket_s=5, horizon_s=60)
    assert summary(None) is None
    rolling.observe(("m", "total"), 0.1)
    rolling.count(("code", "m", "200"))
    assert rolling.keys(60) == {("m", "total"), ("code", "m", "200")}


def test_bad_bucket_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="bucket_s"):
        Rolling(ManualClock(), bucket_s=0, horizon_s=60)
    with pytest.raises(ValueError, match="bucket_s"):
        Rolling(ManualClock(), bucket_s=10, horizon_s=5)


def test_a_window_can_end_in_the_past() -> None:
    """The "before" baseline: the minutes before the last one, from the same buckets."""
    clock = ManualClock(0.0)
    rolling = Rolling(clock, bucket_s=5, horizon_s=300)
    for _ in range(3):
        rolling.observe("k", 0.010)
        rolling.count("c")
    clock.advance(120)  # the old values are 120 s back
    rolling.observe("k", 0.100)
    rolling.count("c")
    assert summary(rolling.merged("k", 60))["max"] == pytest.approx(0.100, rel=0.02)
    before = summary(rolling.merged("k", 240, ago_s=60))
    assert before["count"] == 3 and before["max"] == pytest.approx(0.010, rel=0.02)
    assert rolling.total("c", 240, ago_s=60) == 3
    assert rolling.covered_s(240, ago_s=60) == 60  # only 60 s of data existed before the last minute
    assert rolling.keys(60, ago_s=200) == set()


def test_event_rate_is_over_the_span_the_events_came_in() -> None:
    """Arrivals every 0.5 s from t = 10 to t = 18 on a service started at t = 0, read at t = 30:
    2 per second — not 17 over the 30 s the window covers."""
    clock = ManualClock(0.0)
    rolling = Rolling(clock, bucket_s=1, horizon_s=300)
    clock.advance(10)
    for _ in range(17):
        rolling.event("a")
        clock.advance(0.5)
    clock.advance(11.5)
    assert rolling.total("a", 60) == 17
    assert rolling.event_rate("a", 60) == pytest.approx(2.0)
    assert rolling.total("a", 15) == 5  # the window's start cuts in: 16 s … 18 s, still 2 per second
    assert rolling.event_rate("a", 15) == pytest.approx(2.0)
    assert rolling.event_rate("none", 60) == 0.0
    rolling.event("b")
    assert rolling.event_rate("b", 60) == pytest.approx(1 / 30)  # one event: count over the covered time
