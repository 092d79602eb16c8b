"""Service times for the simulation: a profile family's samples, ready to draw from.

Each draw picks one measured sample (the empirical distribution, not a fitted one). A batch size
that was not measured borrows the samples of the nearest measured size, scaled so that their
mean lies on the straight line between the measured sizes' means (beyond the largest measured
size the line through the last two is extended; with one measured size, time grows in
proportion to the batch size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from servoscope.planner.profile import Family, Overheads, ProfileError


@dataclass(frozen=True)
class ServiceTimes:
    classes: tuple[str, ...]  # image-size classes, in the order class indices refer to
    preprocess: tuple[np.ndarray, ...]  # seconds, per class
    inference: tuple[np.ndarray, ...]  # seconds, per batch size (index 0 unused)
    postprocess: tuple[np.ndarray, ...]  # seconds, per batch size (index 0 unused)
    ingest_s: float = 0.0
    respond_s: float = 0.0
    dispatch: np.ndarray = field(
        default_factory=lambda: np.zeros(1)
    )  # seconds from a batch's dispatch to its start: the instance is held, not inferring

    @property
    def max_batch_size(self) -> int:
        return len(self.inference) - 1

    def class_index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise ProfileError(
                f"no preprocess samples for image-size class {name!r}; the profile has {list(self.classes)}"
            ) from None

    def mean_preprocess_s(self, weights: Sequence[float]) -> float:
        """Mean preprocess time over a mix (one weight per class)."""
        return float(sum(w * p.mean() for w, p in zip(weights, self.preprocess)))

    def mean_batch_s(self, size: int) -> float:
        """Mean time an instance is held by a batch of ``size`` (hand-off, inference and postprocessing)."""
        return float(self.dispatch.mean() + self.inference[size].mean() + self.postprocess[size].mean())

    def draw_preprocess(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One preprocess time for each request, by its class index."""
        out = np.empty(len(classes))
        for k, samples in enumerate(self.preprocess):
            mask = classes == k
            out[mask] = samples[rng.integers(len(samples), size=int(mask.sum()))]
        return out


def fixed(preprocess_s: Mapping[str, float], batch_s: Mapping[int, float], max_batch_size: int) -> ServiceTimes:
    """Deterministic service times: each class and batch size takes exactly the time given."""
    family_like = {b: [s] for b, s in batch_s.items()}
    return ServiceTimes(
        tuple(preprocess_s),
        tuple(np.array([s]) for s in preprocess_s.values()),
        by_size(family_like, max_batch_size),
        by_size({}, max_batch_size),
    )


def from_family(family: Family, overheads: Overheads, max_batch_size: int) -> ServiceTimes:
    return ServiceTimes(
        tuple(family.preprocess_s),
        tuple(np.asarray(v, dtype=float) for v in family.preprocess_s.values()),
        by_size(family.inference_s, max_batch_size),
        by_size(family.postprocess_s, max_batch_size),
        overheads.ingest_s,
        overheads.respond_s,
        np.asarray(family.dispatch_s, dtype=float),
    )


def by_size(table: Mapping[int, Sequence[float]], max_size: int) -> tuple[np.ndarray, ...]:
    """Samples for every batch size 1..``max_size`` (index 0 is empty); an empty table: zeros."""
    if not table:
        return (np.zeros(0), *(np.zeros(1) for _ in range(max_size)))
    sizes = sorted(table)
    arrays = {b: np.asarray(table[b], dtype=float) for b in sizes}
    means = [float(arrays[b].mean()) for b in sizes]
    out: list[np.ndarray] = [np.zeros(0)]
    for b in range(1, max_size + 1):
        if b in arrays:
            out.append(arrays[b])
            continue
        nearest = min(sizes, key=lambda m: (abs(m - b), m))
        base = arrays[nearest]
        wanted = _mean_at(b, sizes, means)
        scale = wanted / base.mean() if base.mean() > 0 else 1.0
        out.append(base * scale)
    return tuple(out)


def _mean_at(size: int, sizes: list[int], means: list[float]) -> float:
    if len(sizes) == 1:
        return means[0] * size / sizes[0]
    if size > sizes[-1]:
        slope = (means[-1] - means[-2]) / (sizes[-1] - sizes[-2])
        return max(means[-1], means[-1] + slope * (size - sizes[-1]))
    return float(np.interp(size, sizes, means))
