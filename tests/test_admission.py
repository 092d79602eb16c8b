"""The adaptive concurrency limit and the priority shares, driven by simulated latencies."""

from __future__ import annotations

import pytest

from servoscope.pipeline.admission import GradientLimit, Priority, admits
from servoscope.pipeline.service import adaptive_limit

SERVICE_S = 0.010


def test_limit_grows_while_waits_stay_short_and_the_limit_is_used() -> None:
    limit = GradientLimit(initial=8)
    for _ in range(400):
        limit.update(0.002, SERVICE_S, pending=limit.limit)
    assert limit.limit > 20


def test_limit_shrinks_when_waits_grow_and_recovers() -> None:
    limit = GradientLimit(initial=64)
    for _ in range(100):
        limit.update(8 * SERVICE_S, SERVICE_S, pending=limit.limit)  # waiting 8× the service
    shrunk = limit.limit
    assert shrunk < 64 / 4
    for _ in range(1000):  # additive growth: about one place per limit's worth of answers
        limit.update(0.2 * SERVICE_S, SERVICE_S, pending=limit.limit)
    assert limit.limit > shrunk * 4


def test_large_inputs_are_not_mistaken_for_queueing() -> None:
    # A mix of thumbnails (10 ms) and phone photos (100 ms to serve), neither waiting much:
    # a latency-based limit would shrink on every photo; the wait/service ratio does not move.
    limit = GradientLimit(initial=32)
    for i in range(1000):
        service = 0.100 if i % 3 == 0 else 0.010
        limit.update(0.1 * service, service, pending=10)
    assert limit.limit >= 32


def test_sustained_overload_settles_where_waits_are_tolerable() -> None:
    # Two instances, 10 ms a request: whatever is admitted beyond two waits its turn.
    limit = GradientLimit(initial=64)
    for _ in range(5000):
        pending = limit.limit  # a flood keeps every admitted place taken
        wait = SERVICE_S * max(0.0, pending / 2 - 1)
        limit.update(wait, SERVICE_S, pending)
    assert 2 <= limit.limit <= 4  # waits within tolerance (half the service): about 3 pending


def test_idle_service_does_not_inflate_the_limit() -> None:
    limit = GradientLimit(initial=16)
    for _ in range(500):
        limit.update(0.0, SERVICE_S, pending=1)
    assert limit.limit == 16


def test_limit_stays_within_bounds() -> None:
    limit = GradientLimit(initial=4, min_limit=2, max_limit=40)
    for _ in range(3000):
        limit.update(0.0, SERVICE_S, pending=limit.limit)
    assert limit.limit == 40
    for _ in range(2000):
        limit.update(100 * SERVICE_S, SERVICE_S, pending=limit.limit)
    assert limit.limit == 2


def test_refusals_let_a_small_limit_grow() -> None:
    # At a limit of 2, normal priority gets one place: pending never reaches half the limit
    # again, but the refusals show the demand is there.
    limit = GradientLimit(initial=2)
    for _ in range(200):
        limit.refused()
        limit.update(0.0, SERVICE_S, pending=1)
    assert limit.limit >= 10
    idle = GradientLimit(initial=2)
    for _ in range(200):
        idle.update(0.0, SERVICE_S, pending=0)
    assert idle.limit == 2  # no demand, no growth


def test_priorities_share_the_limit() -> None:
    assert admits(10, 4, Priority.LOW) and not admits(10, 5, Priority.LOW)
    assert admits(10, 8, Priority.NORMAL) and not admits(10, 9, Priority.NORMAL)
    assert admits(10, 9, Priority.HIGH) and not admits(10, 10, Priority.HIGH)
    assert admits(1, 0, Priority.LOW)  # something always gets in


def test_a_batch_counts_all_its_images_but_an_idle_model_takes_any() -> None:
    assert admits(10, 5, Priority.HIGH, count=5) and not admits(10, 5, Priority.HIGH, count=6)
    assert admits(2, 0, Priority.NORMAL, count=3)  # a limit shrunk under load never locks a batch out
    assert not admits(2, 1, Priority.NORMAL, count=3)


def test_priority_parsing() -> None:
    assert Priority.parse(None) is Priority.NORMAL
    assert Priority.parse("High") is Priority.HIGH
    with pytest.raises(ValueError, match="high, normal or low"):
        Priority.parse("urgent")


def test_a_models_limit_keeps_a_full_batch_for_every_instance() -> None:
    # Two instances taking batches of 4: under a flood that makes every admitted request wait,
    # the limit stops at 8 (both instances kept busy with full batches), not at a request each.
    limit = adaptive_limit(max_pending=512, instances=2, max_batch_size=4)
    for _ in range(3000):
        limit.update(100 * SERVICE_S, SERVICE_S, pending=limit.limit)
    assert limit.limit == 8
    assert adaptive_limit(512, 4, 64).min_limit == 128  # never above the initial limit
    assert adaptive_limit(5, 2, 4).min_limit == 5  # nor above max_pending
    assert adaptive_limit(512, 1, 1).min_limit == 2
