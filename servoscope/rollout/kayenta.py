"""Kayenta's canary judge (``NetflixACAJudge-v1.0``), re-implemented as the baseline to beat.

Followed line by line, from spinnaker/kayenta at commit a69573be (April 2025):

- ``kayenta-mannwhitney/src/main/scala/com/netflix/kayenta/mannwhitney/MannWhitney.scala``:
  ``wilcoxonDiff`` and ``calculateConfidenceInterval`` — R's ``wilcox.test`` asymptotic two-sample
  confidence interval with continuity correction; the Hodges–Lehmann estimate is the shift where
  the standardized statistic crosses zero;
- ``kayenta-mannwhitney/src/main/java/com/netflix/kayenta/mannwhitney/BrentSolver.java``: the root
  finder, absolute tolerance 1e-4 (in the metric's own unit);
- ``kayenta-judge/src/main/scala/com/netflix/kayenta/judge/classifiers/metric/MannWhitneyClassifier.scala``:
  High when the interval's lower end clears ``tolerance`` × |estimate| (and the mean ratio reaches
  the allowed increase), Low symmetrically; identical data pass; a degenerate sample gets noise;
- ``kayenta-judge/src/main/scala/com/netflix/kayenta/judge/NetflixACAJudge.scala``: confidence
  0.98, tolerance 0.25, effect-size thresholds 1.0 (mean ratio), no outlier removal by default,
  NaN replaced by 0 (``nanStrategy`` "none");
- ``kayenta-judge/src/main/scala/com/netflix/kayenta/judge/scorers/WeightedSumScorer.scala`` and
  ``.../classifiers/score/ThresholdScoreClassifier.scala``: score = 100 × passing / classified
  metrics (one group); a critical metric that does not pass, or half the metrics without data,
  score 0; Pass at ``pass_threshold``, Marginal at ``marginal_threshold``, else Fail.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

BRENT_TOLERANCE = 1e-4
EPSILON = 2.220446049250313e-16
CONFIDENCE = 0.98
TOLERANCE = 0.25
NOISE_SCALE = 1e-5
NODATA_PERCENT = 50


class Label(str, enum.Enum):
    HIGH = "High"
    LOW = "Low"
    PASS = "Pass"
    NODATA = "Nodata"


class Direction(str, enum.Enum):
    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


@dataclass(frozen=True, slots=True)
class MannWhitney:
    lower: float
    upper: float
    estimate: float


@dataclass(frozen=True, slots=True)
class Classification:
    label: Label
    deviation: float  # mean ratio, experiment / control
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MetricPair:
    name: str
    control: Sequence[float]
    experiment: Sequence[float]
    direction: Direction = Direction.EITHER
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Judgement:
    score: float
    classification: str  # "Pass", "Marginal" or "Fail"
    metrics: tuple[tuple[str, Classification], ...]


def _ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Average ranks from 1 (Commons Math ``NaturalRanking(MAXIMAL, AVERAGE)`` for finite data)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse], dtype=np.float64)


def wilcoxon_diff(mu: float, quantile: float, x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """The standardized, continuity-corrected rank statistic of ``x - mu`` against ``y``, minus ``quantile``."""
    nx, ny = float(len(x)), float(len(y))
    ranks = _ranks(np.concatenate([x - mu, y]))
    dz = ranks[: len(x)].sum() - nx * (nx + 1) / 2 - nx * ny / 2
    correction = math.copysign(0.5, dz) if dz != 0 else 0.0
    _, ties = np.unique(ranks, return_counts=True)
    tie_sum = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    sigma = math.sqrt((nx * ny / 12) * ((nx + ny + 1) - tie_sum / ((nx + ny) * (nx + ny - 1))))
    if sigma == 0:
        raise ValueError("cannot compute confidence interval when all observations are tied")
    return (dz - correction) / sigma - quantile


def _brent(f: _Function, a: float, b: float, fa: float, fb: float) -> float:
    """BrentSolver.solve: a zero of ``f`` between ``a`` and ``b`` (``fa``, ``fb`` its values there)."""
    from scipy.optimize import brentq

    if fa == 0:
        return a
    if fb == 0:
        return b
    if (fa > 0) == (fb > 0):
        return a if abs(fa) < abs(fb) else b
    return float(brentq(f, a, b, xtol=BRENT_TOLERANCE, rtol=4 * EPSILON, maxiter=1000))


class _Function:
    def __init__(self, quantile: float, x: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.quantile, self.x, self.y = quantile, x, y

    def __call__(self, mu: float) -> float:
        return wilcoxon_diff(mu, self.quantile, self.x, self.y)


def mann_whitney(x: ArrayLike, y: ArrayLike, confidence: float = 0.95) -> MannWhitney:
    """Confidence interval and Hodges–Lehmann estimate of the shift ``x - y`` (``mannWhitneyUTest``)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mu_min, mu_max = float(xs.min() - ys.max()), float(xs.max() - ys.min())
    z = NormalDist().inv_cdf((1.0 - confidence) / 2)

    def root(quantile: float) -> float:
        f = _Function(quantile, xs, ys)
        low, high = f(mu_min), f(mu_max)
        if low <= 0:
            return mu_min
        if high >= 0:
            return mu_max
        return _brent(f, mu_min, mu_max, low, high)

    centre = _Function(0.0, xs, ys)
    estimate = _brent(centre, mu_min, mu_max, centre(mu_min), centre(mu_max))
    return MannWhitney(root(-z), root(z), estimate)


def mean_ratio(control: NDArray[np.float64], experiment: NDArray[np.float64]) -> float:
    c, e = float(np.mean(control)), float(np.mean(experiment))
    return math.nan if c == 0.0 or e == 0.0 else e / c


def classify(
    control: ArrayLike,
    experiment: ArrayLike,
    direction: Direction = Direction.EITHER,
    allowed: tuple[float, float] = (1.0, 1.0),
    rng: np.random.Generator | None = None,
) -> Classification:
    """One metric, as ``MannWhitneyClassifier.classify`` inside ``NetflixACAJudge`` (``allowed``: the
    allowed decrease and increase of the mean ratio)."""
    c = np.nan_to_num(np.asarray(control, dtype=np.float64), nan=0.0)
    e = np.nan_to_num(np.asarray(experiment, dtype=np.float64), nan=0.0)
    if len(e) == 0 or len(c) == 0:
        return Classification(Label.PASS, 1.0)  # NaNs replaced, not removed: no data passes
    if len(c) == len(e) and np.array_equal(np.sort(c), np.sort(e)):
        return Classification(Label.PASS, 1.0, "The Canary and Baseline data are identical")
    if len(np.unique(np.concatenate([c, e]))) == 1:
        return Classification(Label.PASS, 1.0)
    if len(np.unique(e)) == 1 and len(np.unique(c)) == 1:
        noise = rng or np.random.default_rng()
        e = e + noise.normal(0.0, abs(e[0]) * NOISE_SCALE, len(e))
        c = c + noise.normal(0.0, abs(c[0]) * NOISE_SCALE, len(c))
    result = mann_whitney(e, c, CONFIDENCE)
    band = TOLERANCE * abs(result.estimate)
    effect = mean_ratio(c, e)
    high = direction in (Direction.INCREASE, Direction.EITHER) and result.lower > band
    high = high and (math.isnan(effect) or effect >= allowed[1])
    low = direction in (Direction.DECREASE, Direction.EITHER) and result.upper < -band
    low = low and (math.isnan(effect) or effect <= allowed[0])
    if high:
        return Classification(Label.HIGH, effect, "classified as High")
    if low:
        return Classification(Label.LOW, effect, "classified as Low")
    return Classification(Label.PASS, effect)


def judge(
    metrics: Sequence[MetricPair],
    pass_threshold: float = 95.0,
    marginal_threshold: float = 75.0,
    rng: np.random.Generator | None = None,
) -> Judgement:
    """The canary's score and classification over ``metrics`` (one group, equal weights)."""
    results = tuple((m.name, classify(m.control, m.experiment, m.direction, rng=rng)) for m in metrics)
    labels = [r.label for _, r in results]
    counted = [label for label in labels if label is not Label.NODATA]
    critical = any(m.critical and r.label is not Label.PASS for m, (_, r) in zip(metrics, results))
    nodata = 100.0 * (len(labels) - len(counted)) / max(len(labels), 1) >= NODATA_PERCENT
    if critical or nodata:
        score = 0.0
    else:
        score = round(100.0 * counted.count(Label.PASS) / len(counted), 2) if counted else 100.0
    verdict = "Pass" if score >= pass_threshold else "Marginal" if score >= marginal_threshold else "Fail"
    return Judgement(score, verdict, results)
