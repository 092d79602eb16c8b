"""The error check's ceiling: errors rising from 0.1% to 1% at 5% canary traffic, counts only.

A seeded Monte Carlo of the failed requests alone (no latencies): by 1,000 canary requests the
canary has made ~10 errors and the baseline ~19; under the null the labels of the failed requests
are independent Bernoulli(share) draws, so their order is a random permutation of the counts. Side
by side, at the same replays: the gate's check (Ville's boundary and the boundary exact on the label
walk, servoscope/rollout/label_walk.py), the one-alternative test at the true ratio (10×) and at the
best ratio, each at the error check's share of alpha and at the whole alpha, a Beta-conjugate
mixture on the canary's share of the failures and a predictable plug-in. The last rows are bounds,
not valid designs: the test that knows the baseline's rate, and one look at exactly 1,000 canary
requests (no test that may look after every request does better)::

    python bench/canary_errors.py              # ~10 s
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
from scipy.special import betainc, betaln
from scipy.stats import poisson

from servoscope.rollout.config import GateConfig
from servoscope.rollout.evidence import bin_log_e, boundary
from servoscope.rollout.label_walk import bin_boundary

Counts = tuple[np.ndarray, np.ndarray]  # canary and baseline failed requests so far, shape (replays, failures)


def draw(rng: np.random.Generator, replays: int, share: float, canary_rate: float, horizon: int) -> Counts:
    canary = rng.binomial(horizon, canary_rate, replays)
    baseline = rng.binomial(rng.negative_binomial(horizon, share, replays), 0.001)
    width = int((canary + baseline).max()) + 1
    slot = np.arange(width)[None, :]
    label = np.where(slot < canary[:, None], 1, np.where(slot < (canary + baseline)[:, None], 0, -1))
    keys = np.where(label < 0, 2.0, rng.random(label.shape))
    label = np.take_along_axis(label, np.argsort(keys, axis=1), axis=1)
    return np.cumsum(label == 1, axis=1).astype(float), np.cumsum(label == 0, axis=1).astype(float)


def beta_mixture(counts: Counts, share: float, a: float = 2.0, b: float = 6.0) -> np.ndarray:
    """A Beta(a, b) prior on the canary's share of the failures, truncated above ``share``: closed form."""
    c, n = counts
    log_mass = betaln(a + c, b + n) + np.log(np.maximum(1 - betainc(a + c, b + n, share), 1e-300))
    prior = betaln(a, b) + math.log(1 - betainc(a, b, share))
    return np.asarray(log_mass - prior - c * math.log(share) - n * math.log(1 - share))


def plug_in(counts: Counts, share: float, a: float = 1.4, b: float = 2.6) -> np.ndarray:
    """Each label bet at the share estimated from the labels before it (at least ``share``)."""
    c, n = counts
    before_c = np.pad(c, ((0, 0), (1, 0)))[:, :-1]
    before_n = np.pad(n, ((0, 0), (1, 0)))[:, :-1]
    p = np.maximum((before_c + a) / (before_c + before_n + a + b), share)
    step_c, step_n = c - before_c, n - before_n
    return np.cumsum(step_c * np.log(p / share) + step_n * np.log((1 - p) / (1 - share)), axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    config = GateConfig()
    share, alpha, ratios = config.canary_share, config.alpha_errors, config.error_ratios
    rng = np.random.default_rng(args.seed)
    runs = {
        "0.1% → 1% ≤1,000": draw(rng, args.replays, share, 0.01, 1000),
        "A/A ≤3,000 (false FAIL)": draw(rng, args.replays, share, 0.001, 3000),
        "0.1% → 0.3% ≤3,000": draw(rng, args.replays, share, 0.003, 3000),
        "0.1% → 3% ≤200": draw(rng, args.replays, share, 0.03, 200),
    }
    best = max(np.arange(3.0, 15.5, 0.5), key=lambda r: share_found(runs, share, (r,), boundary(config.alpha)))

    def mix(rs: tuple[float, ...]) -> Callable[[Counts], np.ndarray]:
        return lambda k: bin_log_e(*k, share, rs)

    rows: list[tuple[str, Callable[[Counts], np.ndarray], float]] = [
        (f"gate {ratios}, Ville's boundary", mix(ratios), boundary(alpha)),
        (f"gate {ratios}, exact on the walk", mix(ratios), bin_boundary(share, alpha, ratios)),
        ("old gate (4, 6, 8, 12), Ville's", mix((4.0, 6.0, 8.0, 12.0)), boundary(alpha)),
        ("one ratio, the true 10×", mix((10.0,)), boundary(alpha)),
        ("one ratio, 10×, whole alpha", mix((10.0,)), boundary(config.alpha)),
        (f"one ratio, the best {best:g}×, whole alpha", mix((best,)), boundary(config.alpha)),
        (f"gate {ratios}, exact, whole alpha", mix(ratios), bin_boundary(share, config.alpha, ratios)),
        ("Beta(2, 6) mixture above the share", lambda k: beta_mixture(k, share), boundary(alpha)),
        ("predictable plug-in", lambda k: plug_in(k, share), boundary(alpha)),
    ]
    print(f"{args.replays:,} replays, canary share {share:.0%}, alpha_errors {alpha:.5f} (alpha {config.alpha:g})")
    print(f"{'':<44}" + "".join(f"{name:>26}" for name in runs))
    for name, log_e, tau in rows:
        found = [float((log_e(counts).max(axis=1) >= tau).mean()) for counts in runs.values()]
        print(f"{name:<44}" + "".join(f"{f:>26.2%}" for f in found))
    # the baseline's rate known, one look: FAIL at 5 or more canary errors of 1,000 (0.37% under the null)
    known, spent = 1.0 - poisson.cdf(4, 10.0), 1.0 - poisson.cdf(4, 1.0)
    print(f"bound: one look at 1,000 canary requests, the baseline's rate known: {known:.2%} (spends {spent:.2%})")
    return 0


def share_found(runs: dict[str, Counts], share: float, ratios: tuple[float, ...], tau: float) -> float:
    counts = next(iter(runs.values()))
    return float((bin_log_e(*counts, share, ratios).max(axis=1) >= tau).mean())


if __name__ == "__main__":
    raise SystemExit(main())
