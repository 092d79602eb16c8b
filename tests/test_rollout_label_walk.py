"""The error check's boundary on the label walk: the exact chance it computes matches a seeded Monte
Carlo of the walk, stays at most alpha, never sits above Ville's, and buys power against errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servoscope.rollout.evidence import bin_log_e, boundary
from servoscope.rollout.label_walk import bin_boundary, evidence_table, false_fail_bound

RATIOS = (6.0, 7.0, 8.0)


def walks_crossing(rho: float, tau: float, walks: int, failures: int, seed: int) -> float:
    """Share of walks of ``failures`` failed requests (each the canary's with chance ``rho``) ever reaching ``tau``."""
    labels = np.random.default_rng(seed).random((walks, failures)) < rho
    canary = np.cumsum(labels, axis=1)
    baseline = np.arange(1, failures + 1) - canary
    return float((bin_log_e(canary, baseline, rho, RATIOS) >= tau).any(axis=1).mean())


@pytest.mark.parametrize(("rho", "alpha"), [(0.2, 0.05), (0.05, 0.01)])
def test_the_exact_chance_matches_the_walk_and_stays_below_alpha(rho: float, alpha: float) -> None:
    tau = bin_boundary(rho, alpha, RATIOS)
    assert 0.0 < tau <= boundary(alpha)
    exact = false_fail_bound(evidence_table(rho, RATIOS, 256), rho, tau)
    assert exact <= alpha
    walks = 10_000
    seen = walks_crossing(rho, tau, walks, 200, seed=20)
    spread = 4.0 * math.sqrt(exact * (1.0 - exact) / walks)
    assert seen <= exact + spread  # 200 failed requests walked: at most the whole walk's chance
    assert seen >= exact - spread - 0.002  # the rest of the walk adds little by then


def test_the_boundary_spends_the_alpha_ville_leaves() -> None:
    alpha = 0.01 / 3
    tau = bin_boundary(0.05, alpha, RATIOS)
    assert tau < boundary(alpha) - 0.3  # Ville's bound, by the lumps the evidence moves in, spends about half
    assert false_fail_bound(evidence_table(0.05, RATIOS, 256), 0.05, tau - 0.05) > alpha  # and no lower will do


def test_no_share_of_alpha_never_fails() -> None:
    assert bin_boundary(0.05, 0.0, RATIOS) == math.inf


def test_errors_rising_tenfold_are_found_more_often_than_with_villes_boundary() -> None:
    """Counts only: 400 canaries at 5% share, 0.1% -> 1% errors, looked at within 1,000 canary requests."""
    rng = np.random.default_rng(7)
    rho, alpha = 0.05, 0.01 / 3
    found = {"walk": 0, "ville": 0}
    for _ in range(400):
        canary_failed = rng.binomial(1000, 0.01)
        baseline_failed = rng.binomial(rng.negative_binomial(1000, rho), 0.001)
        labels = rng.permutation(np.r_[np.ones(canary_failed), np.zeros(baseline_failed)])
        c = np.cumsum(labels)
        evidence = bin_log_e(c, np.arange(1, len(labels) + 1) - c, rho, RATIOS)
        found["walk"] += bool((evidence >= bin_boundary(rho, alpha, RATIOS)).any())
        found["ville"] += bool((evidence >= boundary(alpha)).any())
    assert found["walk"] / 400 >= 0.88 and found["walk"] > found["ville"]
