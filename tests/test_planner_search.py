"""The tuner's search as a pure function, against a FAKE response surface (a formula standing in for
measured servers; the live tuner is tested in test_planner_tune.py)."""

from __future__ import annotations

import math

import pytest

from servoscope.planner.knobs import Knobs
from servoscope.planner.search import Outcome, Space, coordinate_search, pareto

SPACE = Space(
    {
        "max_batch_size": (1, 2, 4, 8),
        "max_queue_delay_ms": (0.0, 2.0, 5.0),
        "instances": (1, 2),
        "intra_op_threads": (1, 2),
        "preprocess_workers": (1, 2),
    }
)


def fake_surface(k: Knobs, crowding: float = 0.6) -> float:
    """FAKE: objective-meeting req/s of a 2-core machine — preprocess pool or instances limit; batching
    pays per image up to 4, a delay pays a little with batching and costs without; oversubscribing
    the cores (instances × threads + workers > 3) is ×``crowding`` (0.6)."""
    pool = 60.0 * k.preprocess_workers
    per_image_ms = 16.0 / min(k.max_batch_size, 4) ** 0.5 + 2.0
    instances = 1000 / per_image_ms * k.instances * (1 + 0.6 * (k.intra_op_threads - 1))
    delay = 1 + (0.03 if k.max_batch_size > 1 else -0.1) * k.max_queue_delay_ms / 5
    crowded = crowding if k.instances * k.intra_op_threads + k.preprocess_workers > 3 else 1.0
    return min(pool, instances) * delay * crowded


def fake_prediction(k: Knobs) -> float:
    """FAKE planner: 20% optimistic (no HTTP), ±8% off point by point, and it underrates crowded cores
    (×0.8, not ×0.6)."""
    wobble = 0.08 * math.sin(7.3 * k.max_batch_size + 3.1 * k.max_queue_delay_ms + 5.7 * k.preprocess_workers)
    return 1.2 * fake_surface(k, crowding=0.8) * (1 + wobble)


def measure_fake(k: Knobs, _predicted: float) -> Outcome:
    rate = fake_surface(k)
    return Outcome(rate, 150.0, ((rate, 150.0), (1.2 * rate, 400.0)), "inference", measuring_s=10.0)


def test_the_search_finds_the_grids_best_within_5_percent_measuring_at_most_15_percent_of_it() -> None:
    points = SPACE.points()
    assert len(points) == 96
    grid_best = max(fake_surface(k) for k in points)
    search = coordinate_search(SPACE, {k: fake_prediction(k) for k in points}, measure_fake, max_trials=14)
    assert search.best is not None
    assert search.best.outcome.rate_per_s >= 0.95 * grid_best
    assert len(search.trials) <= 0.15 * len(points)
    assert len({t.knobs for t in search.trials}) == len(search.trials)  # nothing measured twice


def test_the_search_climbs_away_from_a_seed_the_planner_got_wrong() -> None:
    points = SPACE.points()
    grid_best = max(points, key=fake_surface)
    wrong = Knobs(4, 5.0, 2, 1, 2)  # crowded: 0.72 × the best in truth, 1.15 × the best in the FAKE planner's eyes
    predicted = {k: fake_surface(k) for k in points} | {wrong: 1.15 * fake_surface(grid_best)}
    search = coordinate_search(SPACE, predicted, measure_fake, max_trials=14)
    assert search.trials[0].knobs == wrong and search.trials[0].outcome.rate_per_s < 0.75 * fake_surface(grid_best)
    assert search.best is not None and search.best.knobs == grid_best


def test_a_perfect_planner_is_confirmed_by_one_measurement_and_its_neighbours() -> None:
    points = SPACE.points()
    search = coordinate_search(SPACE, {k: fake_surface(k) for k in points}, measure_fake, max_trials=50)
    best = max(points, key=fake_surface)
    assert search.trials[0].knobs == best
    assert search.best is not None and search.best.knobs == best
    assert all(t.knobs in [n for _, n in SPACE.neighbours(best)] for t in search.trials[1:])
    assert "every knob was tried" in search.stopped


def test_the_budget_bounds_the_measurements() -> None:
    flat = {k: 100.0 for k in SPACE.points()}  # every neighbour looks as good: only the budget stops it
    search = coordinate_search(SPACE, flat, measure_fake, max_trials=3)
    assert len(search.trials) == 3 and "budget" in search.stopped


def test_a_search_needs_a_prediction_for_every_point_and_every_knob_a_value() -> None:
    with pytest.raises(ValueError, match="no prediction"):
        coordinate_search(SPACE, {}, measure_fake, max_trials=3)
    with pytest.raises(ValueError, match="preprocess_workers"):
        Space({"max_batch_size": (1,), "max_queue_delay_ms": (0.0,), "instances": (1,), "intra_op_threads": (1,)})


def test_the_pareto_front_keeps_only_points_no_other_beats_on_both() -> None:
    a, b = Knobs(1, 0, 1, 1, 1), Knobs(4, 2, 1, 1, 1)
    front = pareto([(a, Outcome(50, 80, ((50, 80), (60, 300)))), (b, Outcome(55, 90, ((55, 90), (58, 400))))])
    assert [(r, p) for r, p, _ in front] == [(50, 80), (55, 90), (60, 300)]
