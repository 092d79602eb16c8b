"""Anytime-valid evidence from which arm served each request: pure functions of counts.

The split sends each request to the canary with a known probability ``rho``, independently of
everything else. If the canary behaves like the baseline (the null), whatever is seen of a request
— its latency against a threshold, whether it failed — says nothing about which arm served it:
given the past and the outcome, the label is Bernoulli(``rho``). Under a regression the canary's
share ``p`` of the slow (or failed) requests exceeds ``rho``. For a fixed alternative, the
likelihood ratio of the labels, ``(p/rho)^c ((1-p)/(1-rho))^b`` over ``c`` canary and ``b``
baseline requests of a bin, is a nonnegative martingale of mean 1 under the null, and so is any
average of such ratios over alternatives fixed in advance (a mixture). Ville's inequality then
bounds the chance that the mixture *ever* reaches ``1/alpha`` by ``alpha``: looking after every
request costs nothing, whatever the load does to both arms' latencies, because the proof rests on
the randomized split alone. (Sequential tests of stochastic order on binned data: Lindon, Sanden &
Shirikian, KDD 2022, arXiv:2205.14762; test martingales and mixtures: Howard, Ramdas, McAuliffe &
Sekhon, Ann. Statist. 2021; Ramdas, Grünwald, Vovk & Shafer, Statist. Sci. 2023.)

Every function takes counts (numbers or arrays of any shape, broadcast) and returns log evidence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
CANARY_ABOVE, BASELINE_ABOVE, CANARY_BELOW, BASELINE_BELOW = range(4)  # the first axis of latency counts


def canary_share(rho: float, ratio: float | Array) -> float | Array:
    """The canary's share of a bin's requests when the canary lands there ``ratio`` times as often."""
    return rho * ratio / (rho * ratio + 1.0 - rho)


def label_log_lr(canary: ArrayLike, baseline: ArrayLike, share: ArrayLike, rho: float) -> Array:
    """log of ``(share/rho)^canary ((1-share)/(1-rho))^baseline``; ``-inf`` where ``share`` rules a label out."""
    canary_ = np.asarray(canary, dtype=np.float64)
    baseline_ = np.asarray(baseline, dtype=np.float64)
    share_ = np.asarray(share, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(canary_ > 0, canary_ * np.log(share_ / rho), 0.0)
        down = np.where(baseline_ > 0, baseline_ * np.log((1.0 - share_) / (1.0 - rho)), 0.0)
    return np.asarray(up + down, dtype=np.float64)


def mixture(log_lrs: Array, axis: int | tuple[int, ...]) -> Array:
    """log of the plain average of ``exp(log_lrs)`` over ``axis`` (``-inf`` terms count as zeros)."""
    axes = (axis,) if isinstance(axis, int) else axis
    count = math.prod(log_lrs.shape[a] for a in axes)
    top = np.max(log_lrs, axis=axes, keepdims=True)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    total = np.sum(np.exp(log_lrs - safe_top), axis=axes)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(total) + np.squeeze(safe_top, axis=axes) - math.log(count), dtype=np.float64)


def threshold_log_e(counts: Array, rho: float, quantiles: Sequence[float], ratios: Sequence[float]) -> Array:
    """Evidence that the canary is slower, from counts against the baseline's running quantiles.

    ``counts`` has shape ``(4, Q, ...)``: canary above, baseline above, canary at or below,
    baseline at or below the ``Q`` thresholds. Each alternative says the canary exceeds the
    ``q``-quantile ``r`` times as often as the baseline (``1 - q``); the below-bin share follows.
    Alternatives with ``r (1 - q) >= 1`` are impossible and left out. Returns the mixture's log over
    every possible ``(q, r)``, of shape ``counts.shape[2:]``.
    """
    coefficients, possible = _threshold_coefficients(rho, tuple(quantiles), tuple(ratios))
    log_lr = np.einsum("kqr,kq...->qr...", coefficients, np.asarray(counts, dtype=np.float64))  # (Q, R, ...)
    mask = possible.reshape(possible.shape + (1,) * (log_lr.ndim - 2))
    left_out = math.log(possible.size / possible.sum())  # the average is over the possible ones
    return mixture(np.where(mask, log_lr, -np.inf), axis=(0, 1)) + left_out


def _threshold_coefficients(
    rho: float, quantiles: tuple[float, ...], ratios: tuple[float, ...]
) -> tuple[Array, NDArray[np.bool_]]:
    """The log likelihood ratio per count, shape ``(4, Q, R)``, and which alternatives are possible, ``(Q, R)``."""
    exceed = 1.0 - np.asarray(quantiles, dtype=np.float64)[:, None]
    canary_exceed = np.asarray(ratios, dtype=np.float64)[None, :] * exceed
    possible = canary_exceed < 1.0
    canary_exceed = np.where(possible, canary_exceed, exceed)  # a harmless stand-in, masked later
    above = rho * canary_exceed / (rho * canary_exceed + (1.0 - rho) * exceed)
    below = rho * (1.0 - canary_exceed) / (rho * (1.0 - canary_exceed) + (1.0 - rho) * (1.0 - exceed))
    per_count = np.stack(
        [
            np.log(above / rho),
            np.log((1.0 - above) / (1.0 - rho)),
            np.log(below / rho),
            np.log((1.0 - below) / (1.0 - rho)),
        ]
    )  # (4, Q, R)
    return per_count, possible


def tail_log_e(
    counts: Array, rho: float, quantiles: Sequence[float], exponents: Sequence[float], starts: Sequence[float]
) -> Array:
    """Evidence that the canary's tail is heavier, from the same counts, every threshold at once.

    The ``Q`` thresholds cut each arm's answers into ``Q + 1`` bins (below the first, between two,
    above the last). Each alternative is a whole distribution: beyond the ``start`` quantile the
    canary's survival is the baseline's raised to ``exponent`` < 1 (proportional hazards, Lehmann's
    alternative), ``S_c = S(start) (S / S(start))^exponent``, unchanged below it. A stretched tail
    moves every bin above ``start`` at once, and betting on all of them together finds it with
    less evidence than any one threshold alone. Returns the mixture's log over every
    ``(exponent, start)``, of shape ``counts.shape[2:]`` (``counts`` as for :func:`threshold_log_e`).
    """
    up, down = _tail_coefficients(rho, tuple(quantiles), tuple(exponents), tuple(starts))  # (K, B) each
    c = np.asarray(counts, dtype=np.float64)
    canary_bins = _bins(c[CANARY_ABOVE], c[CANARY_ABOVE] + c[CANARY_BELOW])
    baseline_bins = _bins(c[BASELINE_ABOVE], c[BASELINE_ABOVE] + c[BASELINE_BELOW])
    log_lr = np.tensordot(up, canary_bins, axes=1) + np.tensordot(down, baseline_bins, axes=1)  # (K, ...)
    return mixture(np.asarray(log_lr, dtype=np.float64), axis=0)


def latency_log_e(
    counts: Array,
    rho: float,
    quantiles: Sequence[float],
    ratios: Sequence[float],
    exponents: Sequence[float],
    starts: Sequence[float],
) -> Array:
    """The latency check's evidence: half on one threshold at a time (:func:`threshold_log_e`), half on
    the whole tail (:func:`tail_log_e`) — an average of two test martingales is one."""
    one = threshold_log_e(counts, rho, quantiles, ratios)
    whole = tail_log_e(counts, rho, quantiles, exponents, starts)
    return np.asarray(np.logaddexp(one, whole) - math.log(2.0), dtype=np.float64)


def _bins(above: Array, total: Array) -> Array:
    """Counts per bin, shape ``(Q + 1, ...)``, from counts above each of ``Q`` nested thresholds."""
    return np.concatenate([(total[0] - above[0])[None], above[:-1] - above[1:], above[-1:]], axis=0)


@functools.cache
def _tail_coefficients(
    rho: float, quantiles: tuple[float, ...], exponents: tuple[float, ...], starts: tuple[float, ...]
) -> tuple[Array, Array]:
    """Per alternative and bin, the log likelihood ratio of a canary and of a baseline label, ``(K, Q + 1)`` each."""
    edges = np.concatenate([[0.0], np.asarray(quantiles, dtype=np.float64), [1.0]])
    survival = 1.0 - edges
    baseline_bin = survival[:-1] - survival[1:]
    up, down = [], []
    for exponent in exponents:
        for start in starts:
            tail = (1.0 - start) * (survival / (1.0 - start)) ** exponent
            canary_survival = np.where(edges <= start, survival, tail)
            canary_bin = canary_survival[:-1] - canary_survival[1:]
            share = rho * canary_bin / (rho * canary_bin + (1.0 - rho) * baseline_bin)
            up.append(np.log(share / rho))
            down.append(np.log((1.0 - share) / (1.0 - rho)))
    return np.asarray(up), np.asarray(down)


def bin_log_e(canary: ArrayLike, baseline: ArrayLike, rho: float, ratios: Sequence[float]) -> Array:
    """Evidence that the canary lands in one bin (e.g. failed requests) more often than the baseline.

    Only that bin's labels enter: no estimate of the baseline's own rate is needed. Returns the
    mixture's log over ``ratios``, shaped like the broadcast counts.
    """
    c = np.asarray(canary, dtype=np.float64)[..., None]
    b = np.asarray(baseline, dtype=np.float64)[..., None]
    shares = canary_share(rho, np.asarray(ratios, dtype=np.float64))
    return mixture(label_log_lr(c, b, shares, rho), axis=-1)


def rate_log_e(hits: ArrayLike, trials: ArrayLike, budget: float, ratios: Sequence[float]) -> Array:
    """Evidence that a rate exceeds ``budget`` (e.g. top-1 disagreement on mirrored pairs).

    Each alternative is ``budget * r`` (at most halfway from the budget to 1); against a rate at
    or below the budget the ratio is a supermartingale, so the bound holds for the whole null.
    A zero budget makes any hit infinite evidence.
    """
    k = np.asarray(hits, dtype=np.float64)[..., None]
    n = np.asarray(trials, dtype=np.float64)[..., None]
    if budget <= 0.0:
        return np.asarray(np.where(k[..., 0] > 0, np.inf, 0.0), dtype=np.float64)
    rates = np.minimum(budget * np.asarray(ratios, dtype=np.float64), (1.0 + budget) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = k * np.log(rates / budget) + (n - k) * np.log((1.0 - rates) / (1.0 - budget))
    return mixture(np.asarray(log_lr, dtype=np.float64), axis=-1)


def boundary(alpha: float) -> float:
    """The log evidence at which a check fails: ``log(1/alpha)`` (never, for a zero share of alpha)."""
    return math.inf if alpha <= 0.0 else math.log(1.0 / alpha)
