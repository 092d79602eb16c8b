"""Counterfactual explanations through the planner's simulator: each window's *conditions* (arrival
rate, image-size mix, per-batch inference time at equal batch size, configuration) are read from
its evidence, and the baseline is simulated with one factor at a time set to its current value. A
factor that reproduces the observed P95 change is a cause, with its share; one that reproduces
nothing is not, however much it moved.

The same model predicts the effect of a fix (the current conditions with the fix applied), scaled
by how far the simulation of the current window is from what was measured.

What a window's evidence gives, and the model's assumptions:

- preprocess and inference times are drawn from distributions through the window's P50, P95 and
  P99 (piecewise linear in the quantile);
- a batch of b images holds an instance for t(b) = k · (1 + b) — a fixed cost of about one image,
  then one image's work per image — with k set so that the window's batches keep its instances as
  busy as it measured (busy ratio × instances = batches per second × t(mean batch size)), the
  spread around it from the inference percentiles;
- a factor whose value did not move beyond its sampling error (two standard errors) is left at the
  baseline's: noise reproduces nothing;
- arrivals are Poisson at the window's arrival rate; the batcher is the server's (``dispatch_size``)
  with the batching policy the document names (else the observed largest batch, and the default delay).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from servoscope.doctor.evidence import Evidence, Percentiles
from servoscope.models.config import BatchingConfig
from servoscope.planner import arrivals
from servoscope.planner.service import ServiceTimes
from servoscope.planner.sim import SimConfig, simulate

REQUESTS = 8_000  # per simulation: a P95 within ~3 % (about 400 requests above it)
WARMUP_SHARE = 0.1
QUANTILES = np.linspace(0.005, 0.995, 200)
MAX_BATCH = 256  # simulated batch sizes beyond this are capped
FACTORS = ("arrival rate", "image-size mix", "inference per batch", "configuration")


@dataclass(frozen=True)
class Conditions:
    """One window's factors, as the simulator takes them."""

    rate_per_s: float
    preprocess_s: np.ndarray  # samples
    per_image_s: float  # k in t(b) = k · (1 + b)
    inference_spread: np.ndarray  # samples of t / t_median (≥ 0)
    postprocess_s: float
    instances: int
    workers: int
    batching: BatchingConfig

    def with_factor(self, factor: str, other: Conditions) -> Conditions:
        fields = {
            "arrival rate": ("rate_per_s",),
            "image-size mix": ("preprocess_s",),
            "inference per batch": ("per_image_s", "inference_spread"),
            "configuration": ("instances", "workers", "batching"),
        }[factor]
        return dataclasses.replace(self, **{f: getattr(other, f) for f in fields})


@dataclass(frozen=True)
class Explanation:
    simulated_p95_s: tuple[float, float]  # the baseline's and the current conditions'
    reproduced_p95_s: dict[str, float]  # factor → the baseline's P95 with that factor at its current value
    shares: dict[str, float]  # factor → its share of the change the factors reproduce, on a log scale (sum 1)

    def leading(self) -> tuple[str, float] | None:
        if not self.shares:
            return None
        factor = max(self.shares, key=lambda f: self.shares[f])
        return factor, self.shares[factor]

    def describe(self) -> str:
        b, n = self.simulated_p95_s
        ranked = sorted(self.shares.items(), key=lambda kv: -kv[1])
        parts = ", ".join(f"{f} {s:.0%} (alone: {self.reproduced_p95_s[f] * 1000:.0f} ms)" for f, s in ranked if s > 0)
        said = parts or "no factor"
        return f"planner's model: P95 {b * 1000:.1f} → {n * 1000:.1f} ms simulated; reproduced by {said}"


def conditions(e: Evidence) -> Conditions:
    inference = e.stages["inference"]
    size = max(e.batch_mean_size, 1.0)
    median = max(inference.p50, 1e-6)
    held_s = e.busy_ratio * e.instances * size / e.answered_per_s if e.answered_per_s > 0 else 0.0
    return Conditions(
        rate_per_s=max(rate_per_s(e), 1e-3),
        preprocess_s=_samples(e.stages["preprocess"]),
        per_image_s=(held_s if held_s > 0 else median) / (1.0 + size),
        inference_spread=_samples(inference) / median,
        postprocess_s=0.0 if held_s > 0 else e.stages["postprocess"].p50,  # the busy time holds it
        instances=max(e.instances, 1),
        workers=max(e.preprocess_workers, 1),
        batching=_batching(e),
    )


def rate_per_s(e: Evidence) -> float:
    return e.arrived_per_s if e.arrived_per_s > 0 else e.answered_per_s + e.refused_per_s


def moved(factor: str, base: Evidence, now: Evidence) -> bool:
    """The factor's value changed beyond two standard errors of the windows' sampling."""
    if factor == "configuration":
        return True  # counted, not sampled
    if factor == "arrival rate":
        n = (base.total.count, now.total.count)
        return min(n) > 0 and abs(math.log(max(rate_per_s(now), 1e-9) / max(rate_per_s(base), 1e-9))) >= 2 * math.sqrt(
            1 / n[0] + 1 / n[1]
        )
    stage = "preprocess" if factor == "image-size mix" else "inference"
    if factor == "inference per batch":
        then, current = conditions(base).per_image_s, conditions(now).per_image_s
    else:
        then, current = base.stages[stage].p50, now.stages[stage].p50
    n = (base.stages[stage].count, now.stages[stage].count)
    # the median of n samples: its rank is uncertain by √(0.25/n); about as much, relative, in value
    return (
        min(n) > 0
        and current > 0
        and then > 0
        and abs(math.log(current / then)) >= 2 * math.sqrt(0.25 / n[0] + 0.25 / n[1]) * 2
    )


def _batching(e: Evidence) -> BatchingConfig:
    named = e.deployment.models.get(e.model) if e.deployment is not None else None
    if named is not None and named.batching:
        kept = ("max_batch_size", "max_queue_delay_s", "max_queue_size")
        values = {k: v for k, v in named.batching.items() if k in kept}
        policy = BatchingConfig.model_validate(values)
    else:
        policy = BatchingConfig.model_validate({"max_batch_size": max(e.batch_max_size or 1, 1)})
    return policy.model_copy(update={"max_batch_size": min(policy.max_batch_size, MAX_BATCH)})


def _samples(p: Percentiles) -> np.ndarray:
    """Draws through (0, 0), (½, P50), (0.95, P95), (0.99, P99), (1, P99)."""
    if p.count <= 0:
        return np.zeros(1)
    return np.interp(QUANTILES, (0.0, 0.5, 0.95, 0.99, 1.0), (0.5 * p.p50, p.p50, p.p95, p.p99, p.p99))


def simulated_p95_s(c: Conditions, seed: int = 0) -> float:
    """P95 of the answered requests' time from arrival to answer (ingest and respond left out)."""
    sizes = range(1, c.batching.max_batch_size + 1)
    inference = (np.zeros(0), *(c.per_image_s * (1 + b) * c.inference_spread for b in sizes))
    post = (np.zeros(0), *(np.full(1, c.postprocess_s) for _ in sizes))
    service = ServiceTimes(("window",), (c.preprocess_s,), inference, post)
    times = arrivals.poisson(c.rate_per_s, REQUESTS / c.rate_per_s, seed)[:REQUESTS]
    result = simulate(
        times, np.zeros(len(times), dtype=int), service, SimConfig(c.workers, c.instances, c.batching), seed=seed
    )
    keep = (result.arrival >= WARMUP_SHARE * float(times[-1])) & ~result.refused if len(times) else result.refused
    totals = result.total[keep]
    return float(np.percentile(totals, 95)) if len(totals) else 0.0


def explain(base: Evidence, now: Evidence) -> Explanation:
    then, current = conditions(base), conditions(now)
    p95 = (simulated_p95_s(then), simulated_p95_s(current))
    reproduced = {f: simulated_p95_s(then.with_factor(f, current)) if moved(f, base, now) else p95[0] for f in FACTORS}
    # on a log scale: near saturation one factor alone can take the P95 past what all of them together did
    rises = {f: max(0.0, math.log(v / p95[0])) if v > 0 and p95[0] > 0 else 0.0 for f, v in reproduced.items()}
    total = sum(rises.values())
    shares = {f: r / total if total > 0 else 0.0 for f, r in rises.items()}
    return Explanation(p95, reproduced, shares)


def predicted_p95_s(now: Evidence, fixed: Conditions) -> float:
    """The current window's measured total P95 under ``fixed`` conditions: scaled by the simulated
    change (measured × simulated(fixed) ÷ simulated(now))."""
    simulated_now = simulated_p95_s(conditions(now))
    if simulated_now <= 0:
        return now.total.p95
    return now.total.p95 * simulated_p95_s(fixed) / simulated_now
