"""Predicted effects of the prescribed fixes, from the planner's model, and the counterfactual's own
finding where no rule names the cause.

A fix's remedy says what it changes in the current window's conditions (one replica more halves the
rate each one sees; a revert puts back the baseline's configuration, and for a deploy its inference
times …). The simulated P95 is mapped to a measured one through the two windows: the baseline's
and the current conditions' simulated P95s are put on their measured ones, and a fix's simulated
P95 is placed between (or beyond) them on a log scale — so a fix that restores the baseline's
conditions predicts the baseline's P95, whatever the model's own error. Where the two simulations
agree, or move the other way (the model does not see the change), the current measurement is scaled
by the simulated ratio.
"""

from __future__ import annotations

import dataclasses
import math

from servoscope.doctor import counterfactual
from servoscope.doctor.changes import Change, material
from servoscope.doctor.counterfactual import Conditions, Explanation
from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import Finding, Fix, Remedy, conf, ms, ratio

MIN_SHARE = 0.5  # of the reproduced change, for the counterfactual to name a cause alone
MIN_LOG_SPAN = 0.05  # simulated P95s closer than 5 %: one anchor
OUTSIDE_CORES = 0.5  # more CPU used outside the service than this: a neighbour is the likelier cause


def fixed(remedy: Remedy, then: Conditions, now: Conditions, replicas: int = 1) -> Conditions:
    if remedy == "replica+1":
        return dataclasses.replace(now, rate_per_s=now.rate_per_s * replicas / (replicas + 1))
    if remedy == "workers+1":
        return dataclasses.replace(now, workers=now.workers + 1)
    if remedy in ("baseline-config", "baseline-batching"):
        return now.with_factor("configuration", then)
    if remedy == "baseline-inference":
        return now.with_factor("inference per batch", then)
    if remedy == "baseline-mix":
        return now.with_factor("image-size mix", then)
    if remedy == "baseline-machine":
        return now.with_factor("inference per batch", then).with_factor("image-size mix", then)
    return now.with_factor("configuration", then).with_factor("inference per batch", then)  # revert a deploy


def with_predictions(finding: Finding, base: Evidence, now: Evidence, explained: Explanation) -> Finding:
    """The finding with each fix's predicted P95 (now → after), where its remedy is one the model knows."""
    if not any(f.remedy for f in finding.fixes):
        return finding
    then, current = counterfactual.conditions(base), counterfactual.conditions(now)
    anchors = Anchors(explained.simulated_p95_s, (base.total.p95, now.total.p95))
    fixes = tuple(_predicted(f, then, current, anchors) for f in finding.fixes)
    return dataclasses.replace(finding, fixes=fixes)


@dataclasses.dataclass(frozen=True)
class Anchors:
    simulated_s: tuple[float, float]  # (baseline, now)
    measured_s: tuple[float, float]

    def measured(self, simulated_s: float) -> float:
        (sb, sn), (mb, mn) = self.simulated_s, self.measured_s
        if min(sb, sn, mb, mn, simulated_s) <= 0:
            return mn
        span = math.log(sn / sb)
        if abs(span) < MIN_LOG_SPAN or span * math.log(mn / mb) <= 0:  # the model does not see the change
            return mn * simulated_s / sn
        return math.exp(math.log(mb) + math.log(simulated_s / sb) * math.log(mn / mb) / span)


def _predicted(fix: Fix, then: Conditions, current: Conditions, anchors: Anchors) -> Fix:
    if fix.remedy is None:
        return fix
    after = anchors.measured(counterfactual.simulated_p95_s(fixed(fix.remedy, then, current)))
    now = anchors.measured_s[1]
    said = f"{fix.effect}; predicted (planner's model): P95 {ms(now)} → {ms(after)}"
    return dataclasses.replace(fix, effect=said, predicted_p95_s=(now, after))


def counterfactual_finding(
    base: Evidence, now: Evidence, explained: Explanation, changes: tuple[Change, ...]
) -> Finding | None:
    """The cause the planner's model names when no rule does: the factor that reproduces most of the change."""
    leading = explained.leading()
    if leading is None or leading[1] < MIN_SHARE:
        return None
    factor, share = leading
    outside = now.outside_cpu_cores - base.outside_cpu_cores
    line = explained.describe()
    if factor == "configuration" or material(changes):
        told = "; ".join(c.describe() for c in material(changes)) or "the batching or capacity the windows show"
        return Finding(
            "config-change",
            f"a changed configuration reproduces the regression: {told}",
            conf(0.5 + 0.3 * share),
            (line,),
            (Fix("revert the change", "P95 back toward the baseline's", "configuration", "baseline-config"),),
        )
    if factor == "arrival rate":
        load = ratio(now.arrived_per_s or now.answered_per_s, base.arrived_per_s or base.answered_per_s)
        said = f"more traffic (×{load:.2f}) reproduces the regression"
        return Finding(
            "traffic-growth",
            said,
            conf(0.5 + 0.3 * share),
            (line,),
            (Fix("add a replica", "queues drain", "infrastructure", "replica+1"),),
        )
    if outside >= OUTSIDE_CORES:
        return Finding(
            "cpu-contention",
            f"work outside the service (+{outside:.1f} cores on average; bursts run higher) slows the service's "
            "own stages",
            conf(0.5 + 0.3 * share),
            (
                line,
                f"outside the service {base.outside_cpu_cores:.2f} → {now.outside_cpu_cores:.2f} cores; "
                f"machine CPU {base.machine_cpu_utilization_ratio:.0%} → {now.machine_cpu_utilization_ratio:.0%}",
            ),
            (
                Fix(
                    "find the neighbour process and move it, or pin the service to dedicated cores (cpuset)",
                    f"P95 toward {ms(base.total.p95)}",
                    "infrastructure",
                    "baseline-machine",
                ),
            ),
        )
    if factor == "image-size mix":
        said = "slower preprocessing of the inputs reproduces the regression"
        return Finding(
            "input-drift",
            said,
            conf(0.4 + 0.3 * share),
            (line,),
            (
                Fix(
                    "cap upload size, or have clients resize before sending",
                    f"preprocess P95 back toward {ms(base.stages['preprocess'].p95)}",
                    "clients",
                    "baseline-mix",
                ),
            ),
        )
    return Finding(
        "slow-inference",
        "each batch takes longer at the same batch size, and that reproduces the regression",
        conf(0.4 + 0.3 * share),
        (line,),
        (
            Fix(
                "check the cores and the model: frequency scaling, CPU quota, a heavier model file",
                f"inference P95 back toward {ms(base.stages['inference'].p95)}",
                "infrastructure",
                "baseline-inference",
            ),
        ),
    )
