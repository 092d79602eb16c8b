"""The gate over a whole recorded sequence at once: the same decisions as feeding
:class:`servoscope.rollout.gate.Gate` one request at a time, computed with array operations so a
Monte Carlo can replay thousands of canaries (bench/canary.py; a test holds the two to the same
answers). Latency and errors only: mirrored pairs are judged by the streaming gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from servoscope.rollout.config import GateConfig
from servoscope.rollout.evidence import bin_log_e, boundary
from servoscope.rollout.gate import latency_evidence, slowed_stage
from servoscope.rollout.label_walk import error_boundary
from servoscope.rollout.observation import COLUMNS
from servoscope.rollout.thresholds import threshold_path
from servoscope.rollout.verdict import Check


@dataclass(frozen=True, slots=True)
class Replay:
    """``fail_at``: canary requests seen when the gate failed (None: it never did); ``stage``: the
    stage a latency FAIL names (when per-stage columns were given)."""

    fail_at: int | None
    check: Check | None
    stage: str | None
    canary_requests: int


def replay(
    canary: NDArray[np.bool_], rows: NDArray[np.float64], failed: NDArray[np.bool_], config: GateConfig
) -> Replay:
    """``rows``: seconds per request, shape ``(N,)`` (total only) or ``(N, len(COLUMNS))``."""
    rows2 = rows[:, None] if rows.ndim == 1 else rows
    above, valid = _compare(canary, rows2, failed, config)
    latency = _latency_path(canary, above[:, :, 0], valid, config)
    rho = config.canary_share
    errors = bin_log_e(np.cumsum(canary & failed), np.cumsum(~canary & failed), rho, config.error_ratios)
    hits = [(_first(latency >= boundary(config.alpha_latency)), Check.LATENCY)]
    hits.append((_first(errors >= error_boundary(config)), Check.ERRORS))
    n_canary = int(canary.sum())
    at, check = min(((i, c) for i, c in hits if i is not None), default=(None, None), key=lambda hit: hit[0])
    if at is None:
        return Replay(None, None, None, n_canary)
    fail_at = int(canary[: at + 1].sum())
    if check is not Check.LATENCY:
        return Replay(fail_at, check, None, n_canary)
    seen = slice(0, at + 1)
    stage = _stage(canary[seen], rows2[seen], failed[seen], above[seen], valid[seen], config)
    return Replay(fail_at, check, stage, n_canary)


def _compare(
    canary: NDArray[np.bool_], rows: NDArray[np.float64], failed: NDArray[np.bool_], config: GateConfig
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Each request against the thresholds in force when it arrived: (above, shape (N, Q, M); valid, (N,))."""
    usable = ~failed & np.isfinite(rows).all(axis=1)
    feeds = ~canary & usable
    thresholds = threshold_path(rows[feeds], config.latency_quantiles, config.baseline_window, config.refresh_every)
    if len(thresholds) == 0:
        nothing = np.zeros((len(rows), len(config.latency_quantiles), rows.shape[1]), dtype=bool)
        return nothing, np.zeros(len(rows), dtype=bool)
    block = (np.cumsum(feeds) - feeds) // config.refresh_every  # refreshes done before each request
    above = rows[:, None, :] > thresholds[np.clip(block - 1, 0, len(thresholds) - 1)]
    return above, usable & (block >= 1)


def _counts(canary: NDArray[np.bool_], above: NDArray[np.bool_], valid: NDArray[np.bool_]) -> list[NDArray[np.bool_]]:
    c = (canary & valid)[:, None]
    b = (~canary & valid)[:, None]
    if above.ndim == 3:
        c, b = c[:, :, None], b[:, :, None]
    return [c & above, b & above, c & ~above, b & ~above]


def _latency_path(
    canary: NDArray[np.bool_], above: NDArray[np.bool_], valid: NDArray[np.bool_], config: GateConfig
) -> NDArray[np.float64]:
    cumulative = np.stack([np.cumsum(part, axis=0) for part in _counts(canary, above, valid)])  # (4, N, Q)
    counts = np.moveaxis(cumulative, 1, -1).astype(np.float64)  # (4, Q, N)
    return latency_evidence(counts, config)


def _stage(
    canary: NDArray[np.bool_],
    rows: NDArray[np.float64],
    failed: NDArray[np.bool_],
    above: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    config: GateConfig,
) -> str | None:
    """The stage the streaming gate names (:func:`servoscope.rollout.gate.slowed_stage`), from the same
    counts and the same mean durations (every answered request with finite durations, as the gate keeps them)."""
    if above.shape[2] != len(COLUMNS):
        return None
    counts = np.stack([part.sum(axis=0) for part in _counts(canary, above, valid)]).astype(np.float64)  # (4, Q, M)
    per_stage = latency_evidence(counts[:, :, 1:], config)
    timed = ~failed & np.isfinite(rows).all(axis=1)
    means = [
        rows[timed & arm].mean(axis=0) if (timed & arm).any() else np.zeros(rows.shape[1]) for arm in (~canary, canary)
    ]
    growth = dict(zip(COLUMNS[1:], (float(v) for v in means[1][1:] - means[0][1:])))
    return slowed_stage(dict(zip(COLUMNS[1:], (float(v) for v in per_stage))), growth, config.alpha_latency)


def _first(crossed: NDArray[np.bool_]) -> int | None:
    return int(np.argmax(crossed)) if crossed.any() else None
