"""The adaptive concurrency limit and the priority shares, driven by simulated latencies."""

from __future__ import annotations

import pytest

from servoscope.pipeline.admission import GradientLimit, Priority, admits


def quiet(limit: GradientLimit, latency_s: float = 0.010, n: int = 50) -> None:
    for _ in range(n):
        limit.update(latency_s, in_flight=1)


def test_a_flood_from_the_start_still_learns_a_baseline() -> None:
    limit = GradientLimit(initial=128, quiet_in_flight=0)
    limit.update(0.010, in_flight=128)  # the first request did not queue
    for _ in range(200):
        limit.update(0.500, in_flight=128)
    assert limit.baseline_s == pytest.approx(0.010)
    assert limit.limit <= 4


def test_limit_grows_while_latency_holds_and_the_limit_is_used() -> None:
    limit = GradientLimit(initial=8)
    quiet(limit)
    for _ in range(200):
        limit.update(0.012, in_flight=limit.limit)
    assert limit.limit > 20


def test_limit_shrinks_when_latency_rises_and_recovers() -> None:
    limit = GradientLimit(initial=64)
    quiet(limit)  # the baseline: 10 ms
    for _ in range(100):
        limit.update(0.080, in_flight=limit.limit)  # queues built up: 8× the baseline
    shrunk = limit.limit
    assert shrunk < 64 / 4
    for _ in range(1000):  # additive growth: about one place per limit's worth of answers
        limit.update(0.012, in_flight=limit.limit)
    assert limit.limit > shrunk * 4


def test_sustained_overload_settles_where_latency_is_tolerable() -> None:
    # Two instances, 10 ms a request: whatever is admitted beyond two waits its turn.
    limit = GradientLimit(initial=64, quiet_in_flight=2)
    quiet(limit)
    for _ in range(5000):
        in_flight = limit.limit  # a flood keeps every admitted place taken
        limit.update(0.010 * max(1.0, in_flight / 2), in_flight)
    assert limit.baseline_s == pytest.approx(0.010)
    assert 2 <= limit.limit <= 6  # latency within tolerance (2×) of the baseline: about 4 in flight


def test_idle_service_does_not_inflate_the_limit() -> None:
    limit = GradientLimit(initial=16)
    quiet(limit, n=500)
    assert limit.limit == 16


def test_limit_stays_within_bounds() -> None:
    limit = GradientLimit(initial=4, min_limit=2, max_limit=40, quiet_in_flight=0)
    quiet(limit, 0.001)
    for _ in range(2000):
        limit.update(0.001, in_flight=limit.limit)
    assert limit.limit == 40
    for _ in range(2000):
        limit.update(10.0, in_flight=limit.limit)
    assert limit.limit == 2


def test_priorities_share_the_limit() -> None:
    assert admits(10, 4, Priority.LOW) and not admits(10, 5, Priority.LOW)
    assert admits(10, 8, Priority.NORMAL) and not admits(10, 9, Priority.NORMAL)
    assert admits(10, 9, Priority.HIGH) and not admits(10, 10, Priority.HIGH)
    assert admits(1, 0, Priority.LOW)  # something always gets in


def test_priority_parsing() -> None:
    assert Priority.parse(None) is Priority.NORMAL
    assert Priority.parse("High") is Priority.HIGH
    with pytest.raises(ValueError, match="high, normal or low"):
        Priority.parse("urgent")


def test_refusals_let_a_small_limit_grow() -> None:
    # At a limit of 2, normal priority gets one place: in_flight never reaches half the limit
    # again, but the refusals show the demand is there.
    limit = GradientLimit(initial=2, quiet_in_flight=2)
    quiet(limit)
    for _ in range(200):
        limit.refused()
        limit.update(0.010, in_flight=1)
    assert limit.limit >= 10
    stuck = GradientLimit(initial=2, quiet_in_flight=2)
    quiet(stuck)
    for _ in range(200):
        stuck.update(0.010, in_flight=0)
    assert stuck.limit == 2  # no demand, no growth
