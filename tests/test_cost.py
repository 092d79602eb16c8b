"""The service-time model and the time admission rule: pure functions, driven with known numbers."""

from __future__ import annotations

import pytest

from servoscope.pipeline.admission import AdmissionPolicy, Priority, in_time
from servoscope.pipeline.cost import Backlog, CostModel, Kept, predict_s, size_class


def learned(batch_s: dict[int, float], preprocess_s: float = 0.002, postprocess_s: float = 0.001) -> CostModel:
    cost = CostModel()
    for size, seconds in batch_s.items():
        cost.learn({"inference": seconds}, size, 0)
    cost.learn({"preprocess": preprocess_s, "postprocess": postprocess_s}, 0, 20_000)
    return cost


def test_nothing_seen_predicts_nothing() -> None:
    cost = CostModel()
    assert cost.batch_time(4) is None and cost.preprocess_time(10_000) is None
    assert predict_s(cost, Backlog(10, 2, 8), 10_000) is None
    assert in_time(None, 0.1, Priority.LOW)  # no prediction: admitted


def test_batch_times_are_learned_interpolated_and_extrapolated() -> None:
    cost = learned({1: 0.010, 8: 0.045})
    assert cost.batch_time(1) == pytest.approx(0.010)
    assert cost.batch_time(8) == pytest.approx(0.045)
    assert cost.batch_time(4) == pytest.approx(0.010 + 3 / 7 * 0.035)  # between the two seen
    assert cost.batch_time(16) == pytest.approx(0.090)  # the largest seen, at its cost per image
    only_big = learned({8: 0.040})
    assert only_big.batch_time(6) == pytest.approx(0.030)  # smaller than any seen: its cost per image …
    assert only_big.batch_time(1) == pytest.approx(0.020)  # … but no less than half of it (fixed costs)


def test_the_means_follow_the_machine() -> None:
    cost = learned({1: 0.010})
    for _ in range(200):
        cost.learn({"inference": 0.020}, 1, 0)  # the machine became twice as slow
    assert cost.batch_time(1) == pytest.approx(0.020, rel=0.01)


def test_preprocess_time_by_upload_size_with_the_nearest_class_standing_in() -> None:
    cost = CostModel()
    cost.learn({"preprocess": 0.002}, 0, 20_000)
    cost.learn({"preprocess": 0.030}, 0, 3_000_000)
    assert size_class(20_000) != size_class(3_000_000)
    assert cost.preprocess_time(30_000) == pytest.approx(0.002)
    assert cost.preprocess_time(2_500_000) == pytest.approx(0.030)
    assert cost.preprocess_time(10_000_000) == pytest.approx(0.030)  # no larger class seen: the nearest


def test_prediction_in_rounds_of_one_batch_per_instance() -> None:
    cost = learned({1: 0.010, 2: 0.016, 4: 0.030}, preprocess_s=0.002, postprocess_s=0.001)
    # idle, 2 instances of 4: a batch of one
    assert predict_s(cost, Backlog(0, 2, 4), 20_000) == pytest.approx(0.002 + 0.010 + 0.001)
    # 3 ahead + this one over 2 instances: one round of batches of 2
    assert predict_s(cost, Backlog(3, 2, 4), 20_000) == pytest.approx(0.002 + 0.016 + 0.001)
    # 19 ahead + this one = 20: three rounds of full batches (8 a round)
    assert predict_s(cost, Backlog(19, 2, 4), 20_000) == pytest.approx(0.002 + 3 * 0.030 + 0.001)
    # images waiting for the 2 preprocess workers come first
    assert predict_s(cost, Backlog(0, 2, 4, preprocess_waiting=10, preprocess_workers=2), 20_000) == pytest.approx(
        10 * 0.002 / 2 + 0.002 + 0.010 + 0.001
    )


def test_in_time_by_objective_share_and_deadline() -> None:
    objective = 0.100
    assert in_time(0.095, objective, Priority.HIGH)  # high: all of it
    assert not in_time(0.095, objective, Priority.NORMAL)  # normal: 90 %
    assert in_time(0.089, objective, Priority.NORMAL)
    assert not in_time(0.051, objective, Priority.LOW)  # low: half
    assert not in_time(0.040, objective, Priority.HIGH, deadline_s=0.030)  # its own deadline is sooner


def test_admission_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="time, adaptive or static"):
        AdmissionPolicy("fifo")
    with pytest.raises(ValueError, match="objective_s > 0"):
        AdmissionPolicy("time", 10, 0.0)


def test_kept_samples_are_the_learned_ones_by_the_same_keys_and_bounded() -> None:
    cost = CostModel(kept=Kept(limit=50))
    for i in range(200):
        cost.learn({"preprocess": 0.002, "inference": 0.010 + i / 1e5, "postprocess": 0.001}, 4, 20_000, 320 * 240)
    cost.learn({"inference": 0.030}, 8, 0)  # no image: no preprocess sample
    kept = cost.kept
    assert kept is not None
    assert set(kept.inference) == {4, 8} and set(kept.postprocess) == {4} and set(kept.preprocess) == {320 * 240}
    assert len(kept.inference[4]) == 50 and max(kept.inference[4]) > 0.0105  # a sample of all 200, not the first 50
    assert cost.batch_time(4) == pytest.approx(sum(0.010 + i / 1e5 for i in range(200)) / 200, rel=0.1)
