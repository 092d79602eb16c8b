"""The error check's boundary, computed exactly on the walk its labels make under the null.

The error check (:func:`servoscope.rollout.evidence.bin_log_e`) moves only when a request fails,
and then by a whole lump: with about ten canary errors to go on, the mixture jumps past ``1/alpha``
rather than meeting it, and Ville's inequality — which bounds the chance of *ever* reaching a level
by ``alpha`` for any test martingale — leaves about half of ``alpha`` unspent.

But the null says more than "a test martingale": whatever the failure process (bursts, load, a
baseline rate nobody knows), the labels of the failed requests, in the order they fail, are
independent Bernoulli(``rho``) draws, because the split draws each request's arm independently of
everything else (a canary that fails less often only makes canary labels rarer, which lowers every
chance below). So the chance that the evidence ever reaches a level ``tau`` within the first
``failures`` failed requests is a sum over that walk, computed here exactly; beyond them Ville's
inequality, applied to the mixture from there on, bounds the rest by its value then over
``e^tau``. The boundary is the lowest ``tau`` whose two parts add up to at most ``alpha``: the
chance of a false FAIL, looking after every request, stays at most ``alpha`` — Ville's inequality
still bounds the part of the walk not counted — and it is never above Ville's own ``log(1/alpha)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import NDArray

from servoscope.rollout.config import GateConfig
from servoscope.rollout.evidence import bin_log_e, boundary

FAILURES = 256  # failed requests walked exactly (~50 ms); the rest is Ville's bound (negligible by then)
BISECTIONS = 40


@functools.cache
def bin_boundary(rho: float, alpha: float, ratios: tuple[float, ...], failures: int = FAILURES) -> float:
    """The log evidence at which the error check fails: a false FAIL has chance at most ``alpha``."""
    ville = boundary(alpha)
    if not math.isfinite(ville):
        return ville
    table = evidence_table(rho, ratios, failures)
    low, high = 0.0, ville
    for _ in range(BISECTIONS):
        middle = (low + high) / 2.0
        if false_fail_bound(table, rho, middle) <= alpha:
            high = middle
        else:
            low = middle
    return high


def error_boundary(config: GateConfig) -> float:
    """The error check's boundary for a gate's settings (computed once per setting, then remembered)."""
    return bin_boundary(config.canary_share, config.alpha_errors, config.error_ratios)


def false_fail_bound(table: NDArray[np.float64], rho: float, tau: float) -> float:
    """The chance, under the null, that the evidence ever reaches ``tau``: exact over the table's
    failed requests (``table[k, c]``: log evidence after ``k`` of them, ``c`` on the canary), Ville's
    bound after."""
    failures = len(table) - 1
    mass = np.zeros(failures + 1)
    mass[0] = 1.0
    crossed = 0.0
    for k in range(1, failures + 1):
        moved = mass * (1.0 - rho)
        moved[1:] += mass[:-1] * rho
        hit = table[k] >= tau
        crossed += float(moved[hit].sum())
        moved[hit] = 0.0
        mass = moved
    with np.errstate(over="ignore"):
        rest = float(np.sum(mass * np.minimum(1.0, np.exp(table[failures] - tau))))
    return crossed + rest


def evidence_table(rho: float, ratios: tuple[float, ...], failures: int) -> NDArray[np.float64]:
    """``[k, c]``: the error check's log evidence after ``k`` failed requests, ``c`` of them the canary's."""
    k = np.arange(failures + 1, dtype=np.float64)[:, None]
    c = np.arange(failures + 1, dtype=np.float64)[None, :]
    possible = c <= k
    table = bin_log_e(np.where(possible, c, 0.0), np.where(possible, k - c, 0.0), rho, ratios)
    return np.where(possible, table, -np.inf)
