"""Model output rows → top-k classes with probabilities, vectorized over the batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    index: int
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k highest per row, highest first."""
    k = min(k, probabilities.shape[1])
    part = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(probabilities, part, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(scores, order, axis=1)


class Postprocessor:
    def __init__(self, labels: list[str], kind: str = "logits") -> None:
        self.labels = labels
        self.kind = kind

    def __call__(self, outputs: np.ndarray, ks: list[int]) -> list[list[Prediction]]:
        """One list of predictions per row; row i gets its own ``ks[i]``."""
        rows = outputs.astype(np.float32, copy=True).reshape(outputs.shape[0], -1)
        probabilities = softmax(rows) if self.kind == "logits" else rows
        indices, scores = top_k(probabilities, max(ks))
        labels = self.labels
        return [
            [Prediction(labels[i], i, s) for i, s in zip(indices[row, :k].tolist(), scores[row, :k].tolist())]
            for row, k in enumerate(ks)
        ]
