"""The sequential gate: fed every request of a canary and its baseline, it answers after each one.

Three checks, each a test martingale of :mod:`servoscope.rollout.evidence` with its share of
``alpha``:

- **latency**: each successful answer is compared with the baseline's running quantiles
  (:mod:`servoscope.rollout.thresholds`: P50 … P99 by default); the evidence mixes "the canary
  exceeds the q-quantile r times as often" over every (q, r) — a shift of the body shows at P50,
  a heavier tail at P95/P99 — with whole-tail alternatives that bet on every threshold at once
  (a tail stretched beyond P90 moves them all);
- **errors**: errors and refusals alike; the canary's share of the failed requests against its
  share of the traffic, its boundary computed exactly on the walk of those labels
  (:mod:`servoscope.rollout.label_walk`: the same guarantee, at most ``alpha_errors``, spent in full);
- **disagreement** (with a ``max_disagreement`` budget): top-1 disagreement with the reference on
  mirrored requests, against the budget.

FAIL as soon as one check's evidence reaches ``1/alpha_check`` — the chance that this ever
happens while the canary is as good as the baseline is at most ``alpha``, however often one
looks. A latency FAIL names the stage whose own durations carry the most evidence of a
slowdown (the same test run on each stage's durations). PASS needs the configured minimum
information and no FAIL; before that the verdict is INCONCLUSIVE, never PASS. A FAIL stands:
later requests do not undo it.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from servoscope.rollout.config import GateConfig
from servoscope.rollout.evidence import (
    BASELINE_ABOVE,
    CANARY_ABOVE,
    bin_log_e,
    boundary,
    latency_log_e,
    rate_log_e,
)
from servoscope.rollout.label_walk import error_boundary
from servoscope.rollout.observation import COLUMNS, Observation
from servoscope.rollout.thresholds import RunningQuantiles
from servoscope.rollout.verdict import Check, Evidence, Outcome, Verdict

STAGE_EVIDENCE_MARGIN = 10.0  # stages with evidence within this factor of the bar compete on growth


def slowed_stage(evidence: dict[str, float], growth_s: dict[str, float], alpha_latency: float) -> str:
    """The stage a latency FAIL names: of the stages whose own evidence of a slowdown comes within a factor
    ``STAGE_EVIDENCE_MARGIN`` of the latency boundary (or of the strongest, when none reaches it), the one
    whose canary mean duration grew the most over the baseline's (``growth_s``). The evidence counts how
    often a stage is slow, not by how much: a slowed stage makes the next one wait too, and early on a
    stage that barely moved can lead. The streaming gate and the replay both name the stage here."""
    bar = min(max(evidence.values()), boundary(alpha_latency)) - math.log(STAGE_EVIDENCE_MARGIN)
    return max((name for name in evidence if evidence[name] >= bar), key=lambda name: growth_s[name])


def latency_evidence(counts: np.ndarray, config: GateConfig) -> np.ndarray:
    """The latency check's log evidence from counts against the thresholds, shape ``counts.shape[2:]``."""
    c = config
    return latency_log_e(
        counts, c.canary_share, c.latency_quantiles, c.latency_ratios, c.latency_tail_exponents, c.latency_tail_starts
    )


class Gate:
    """One canary against its baseline. Not thread-safe: feed it from one place."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        error_boundary(config)  # computed here, once per setting, rather than at the first request judged
        self._thresholds = RunningQuantiles(
            config.latency_quantiles, len(COLUMNS), config.baseline_window, config.refresh_every
        )
        self._counts = np.zeros((4, len(config.latency_quantiles), len(COLUMNS)), dtype=np.float64)
        self._requests = [0, 0]  # baseline, canary
        self._sums = np.zeros((2, len(COLUMNS)), dtype=np.float64)  # seconds per column, per arm …
        self._timed = [0, 0]  # … over this many requests
        self._failed = [0, 0]
        self._reasons: Counter[str] = Counter()
        self._mirrored = 0
        self._disagreed = 0
        self._failure: Verdict | None = None

    def observe(self, observation: Observation) -> Verdict:
        """Count one finished request (of either arm) and judge."""
        arm = int(observation.canary)
        self._requests[arm] += 1
        if observation.failed:
            self._failed[arm] += 1
            if observation.canary:
                self._reasons[observation.reason or "error"] += 1
        else:
            self._compare(observation.canary, np.asarray(observation.row(), dtype=np.float64))
        return self.verdict()

    def observe_mirror(self, agree: bool) -> Verdict:
        """Count one mirrored request: did the canary's top-1 agree with the reference's?"""
        self._mirrored += 1
        self._disagreed += int(not agree)
        return self.verdict()

    def _compare(self, canary: bool, row: np.ndarray) -> None:
        if not np.isfinite(row).all():
            return  # a record without durations says nothing about latency
        self._sums[int(canary)] += row
        self._timed[int(canary)] += 1
        current = self._thresholds.current
        if current is not None:
            above = row[None, :] > current
            first = CANARY_ABOVE if canary else BASELINE_ABOVE
            self._counts[first] += above
            self._counts[first + 2] += ~above
        if not canary:
            self._thresholds.add(row)

    def evidence(self) -> tuple[Evidence, ...]:
        c = self.config
        rho = c.canary_share
        latency = float(latency_evidence(self._counts[:, :, 0], c))
        errors = float(bin_log_e(self._failed[1], self._failed[0], rho, c.error_ratios))
        out = [
            Evidence(Check.LATENCY, latency, boundary(c.alpha_latency)),
            Evidence(Check.ERRORS, errors, error_boundary(c)),
        ]
        if c.max_disagreement is not None:
            disagreement = float(rate_log_e(self._disagreed, self._mirrored, c.max_disagreement, c.disagreement_ratios))
            out.append(Evidence(Check.DISAGREEMENT, disagreement, boundary(c.alpha_disagreement)))
        return tuple(out)

    def stage_evidence(self) -> dict[str, float]:
        """Log evidence of a slowdown in each stage's own durations."""
        c = self.config
        per_stage = latency_evidence(self._counts[:, :, 1:], c)
        return dict(zip(COLUMNS[1:], (float(v) for v in per_stage)))

    def _slowed_stage(self, evidence: dict[str, float]) -> str:
        means = self._sums / np.maximum(1, np.asarray(self._timed, dtype=np.float64))[:, None]
        growth = dict(zip(COLUMNS[1:], (float(v) for v in means[1, 1:] - means[0, 1:])))
        return slowed_stage(evidence, growth, self.config.alpha_latency)

    def verdict(self) -> Verdict:
        if self._failure is not None:
            return self._failure
        evidence = self.evidence()
        crossed = [e for e in evidence if e.crossed]
        if crossed:
            self._failure = self._fail(crossed[0], evidence)
            return self._failure
        missing = self._missing()
        outcome = Outcome.INCONCLUSIVE if missing else Outcome.PASS
        reason = "not enough information yet: " + "; ".join(missing) if missing else self._pass_reason()
        return self._verdict(outcome, reason, evidence)

    def _verdict(
        self,
        outcome: Outcome,
        reason: str,
        evidence: tuple[Evidence, ...],
        check: Check | None = None,
        stage: str | None = None,
    ) -> Verdict:
        return Verdict(outcome, reason, evidence, self._requests[1], self._requests[0], self._mirrored, check, stage)

    def _fail(self, failed: Evidence, evidence: tuple[Evidence, ...]) -> Verdict:
        n = self._requests[1]
        if failed.check is Check.LATENCY:
            stages = self.stage_evidence()
            stage = self._slowed_stage(stages)
            reason = f"canary slower than baseline after {n} canary requests; the stage that slowed: {stage}"
            return self._verdict(Outcome.FAIL, reason, evidence, check=failed.check, stage=stage)
        if failed.check is Check.ERRORS:
            rates = f"{self._failed[1]}/{n} canary vs {self._failed[0]}/{self._requests[0]} baseline"
            top = ", ".join(f"{reason} ×{count}" for reason, count in self._reasons.most_common(3))
            reason = f"canary fails more often than baseline ({rates}); canary errors: {top}"
            return self._verdict(Outcome.FAIL, reason, evidence, check=failed.check)
        rate = f"{self._disagreed}/{self._mirrored}"
        reason = f"top-1 disagreement {rate} above the budget {self.config.max_disagreement:g}"
        return self._verdict(Outcome.FAIL, reason, evidence, check=failed.check)

    def _missing(self) -> list[str]:
        c = self.config
        wanted = [
            ("canary requests", self._requests[1], c.min_canary_requests),
            ("baseline requests", self._requests[0], c.min_baseline_requests),
        ]
        if c.max_disagreement is not None:
            wanted.append(("mirrored requests", self._mirrored, c.min_mirrored_requests))
        return [f"{have} of {need} {what}" for what, have, need in wanted if have < need]

    def _pass_reason(self) -> str:
        return f"no regression after {self._requests[1]} canary and {self._requests[0]} baseline requests" + (
            f" and {self._mirrored} mirrored" if self.config.max_disagreement is not None else ""
        )
