"""Logits → probabilities → top-k predictions, vectorized over the batch."""

from __future__ import annotations

import numpy as np
import pytest

from servoscope.pipeline.postprocess import Postprocessor, softmax, top_k

LABELS = ["a", "b", "c", "d", "e"]


def test_softmax_rows_sum_to_one() -> None:
    logits = np.random.default_rng(0).normal(0, 5, (16, 1000)).astype(np.float32)
    probabilities = softmax(logits.copy())
    assert probabilities.shape == logits.shape
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()
    # Order within a row is kept: the largest logit has the largest probability.
    np.testing.assert_array_equal(probabilities.argmax(axis=1), logits.argmax(axis=1))


def test_softmax_matches_the_definition() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits.copy()), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_huge_logits(dtype: type) -> None:
    big = float(np.finfo(dtype).max) / 2
    logits = np.array([[big, 0.0, -big], [big, big, big], [1e4, 1e4 - 1.0, -1e4]], dtype=dtype)
    probabilities = softmax(logits)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[0], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(probabilities[1], [1 / 3] * 3, rtol=1e-6)
    e = np.exp(-1.0)
    np.testing.assert_allclose(probabilities[2], [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-5, atol=1e-7)


def test_top_k_is_highest_first() -> None:
    probabilities = np.array([[0.1, 0.4, 0.05, 0.3, 0.15], [0.5, 0.1, 0.2, 0.05, 0.15]])
    indices, scores = top_k(probabilities, 3)
    np.testing.assert_array_equal(indices, [[1, 3, 4], [0, 2, 4]])
    np.testing.assert_allclose(scores, [[0.4, 0.3, 0.15], [0.5, 0.2, 0.15]])


def test_top_k_matches_a_full_sort() -> None:
    probabilities = np.random.default_rng(1).random((32, 1000))
    indices, scores = top_k(probabilities, 5)
    np.testing.assert_array_equal(indices, np.argsort(-probabilities, axis=1)[:, :5])
    assert (np.diff(scores, axis=1) <= 0).all()


def test_top_k_ties_come_in_index_order() -> None:
    # Equal scores keep a deterministic order: the lower class index first, also at the cut.
    probabilities = np.zeros((1, 1000))
    tied = [932, 815, 670, 557, 276, 49]
    probabilities[0, tied] = 0.1
    probabilities[0, 3] = 0.2
    indices, scores = top_k(probabilities, 5)
    np.testing.assert_array_equal(indices[0], [3, 49, 276, 557, 670])
    np.testing.assert_allclose(scores[0], [0.2, 0.1, 0.1, 0.1, 0.1])


def test_top_k_ties_keep_their_scores_and_stay_within_the_tied_set() -> None:
    probabilities = np.array([[0.2, 0.2, 0.2, 0.2, 0.2]])
    indices, scores = top_k(probabilities, 3)
    assert len(set(indices[0].tolist())) == 3
    np.testing.assert_allclose(scores[0], 0.2)


def test_each_row_gets_its_own_k() -> None:
    outputs = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
    rows = Postprocessor(LABELS, "logits")(outputs, [1, 3, 5])
    assert [len(row) for row in rows] == [1, 3, 5]
    for logits, row in zip(outputs, rows):
        assert row[0].index == int(np.argmax(logits))
        assert row[0].label == LABELS[row[0].index]
        assert [p.score for p in row] == sorted((p.score for p in row), reverse=True)


def test_a_rows_answer_does_not_depend_on_the_k_of_the_others() -> None:
    same = np.tile(np.random.default_rng(4).normal(size=(1, 5)).astype(np.float32), (3, 1))
    rows = Postprocessor(LABELS, "logits")(same, [1, 3, 5])
    assert rows[1][:1] == rows[0] and rows[2][:3] == rows[1]


def test_k_larger_than_the_classes_is_capped() -> None:
    probabilities = np.array([[0.1, 0.2, 0.3, 0.15, 0.25]])
    indices, _ = top_k(probabilities, 50)
    assert indices.shape == (1, 5)
    [row] = Postprocessor(LABELS, "probabilities")(probabilities, [50])
    assert [p.label for p in row] == ["c", "e", "b", "d", "a"]
    assert [p.score for p in row] == pytest.approx([0.3, 0.25, 0.2, 0.15, 0.1])


def test_probabilities_are_passed_through_and_inputs_left_alone() -> None:
    outputs = np.array([[0.7, 0.1, 0.1, 0.05, 0.05]], dtype=np.float32)
    kept = outputs.copy()
    [row] = Postprocessor(LABELS, "probabilities")(outputs, [2])
    assert [(p.label, p.index) for p in row] == [("a", 0), ("b", 1)]
    assert row[0].score == pytest.approx(0.7)
    [row] = Postprocessor(LABELS, "logits")(outputs, [1])
    assert row[0].score == pytest.approx(np.exp(0.7) / np.exp(outputs[0].astype(np.float64)).sum())
    np.testing.assert_array_equal(outputs, kept)


def test_scores_are_plain_floats() -> None:
    [row] = Postprocessor(LABELS)(np.zeros((1, 5), dtype=np.float32), [2])
    assert all(type(p.score) is float and type(p.index) is int for p in row)
