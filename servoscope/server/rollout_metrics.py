"""The rollouts in Prometheus: each model's canary share now, the requests each variant served, the
mirrored requests by what became of them, and the gate's evidence against its boundary per check.
Labels: ``model`` (the served model), ``variant`` (baseline, canary), ``outcome``, ``check`` — a few
values each."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from servoscope.rollout.variants import Rollouts


class RolloutCollector(Collector):
    def __init__(self, rollouts: Rollouts) -> None:
        self.rollouts = rollouts

    def collect(self) -> Iterator[Metric]:
        share = GaugeMetricFamily(
            "servoscope_rollout_canary_share", "The canary's share of the drawn traffic now.", labels=["model"]
        )
        served = CounterMetricFamily(
            "servoscope_rollout_requests", "Requests each variant answered in the rollout.", labels=["model", "variant"]
        )
        mirrored = CounterMetricFamily(
            "servoscope_rollout_mirrored",
            "Mirrored requests: answered, shed, failed, and answered with another top-1 (disagreed).",
            labels=["model", "outcome"],
        )
        evidence = GaugeMetricFamily(
            "servoscope_rollout_evidence_ratio",
            "The gate's log evidence over its boundary per check (1 or more: FAIL).",
            labels=["model", "check"],
        )
        for model, rollout in self.rollouts.by_model.items():
            status = rollout.status()
            share.add_metric([model], status["share"])
            for variant, count in status["served"].items():
                served.add_metric([model, variant], count)
            counts = rollout.mirror
            for outcome, count in (
                ("answered", counts.sent),
                ("shed", counts.shed),
                ("failed", counts.failed),
                ("disagreed", counts.disagreed),
            ):
                mirrored.add_metric([model, outcome], count)
            for e in status["verdict"]["evidence"]:
                if isinstance(e["log_e"], float) and isinstance(e["boundary"], float):
                    evidence.add_metric([model, e["check"]], e["log_e"] / e["boundary"])
        yield from (share, served, mirrored, evidence)
