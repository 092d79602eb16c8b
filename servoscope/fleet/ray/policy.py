"""Ray Serve's custom autoscaling policy for servoscope: the replicas' own signal (see
``record_autoscaling_stats`` in ``replica.py``) through :func:`servoscope.fleet.ray.scaling.desired_replicas`,
instead of Ray's default of 2 ongoing requests per replica (Ray sees none: requests reach the
replicas' own HTTP fronts, not Ray's proxy). Ray Serve instantiates the class once, with
``policy_kwargs``, and calls it on every autoscaling tick."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servoscope.fleet.ray.scaling import SIGNALS, ReplicaSignal, ScalingRule, desired_replicas

if TYPE_CHECKING:
    from ray.serve.config import AutoscalingContext

POLICY_PATH = "servoscope.fleet.ray.policy:QueueWaitPolicy"


class QueueWaitPolicy:
    def __init__(self, **rule: Any) -> None:
        self.rule = ScalingRule(**rule)

    def __call__(self, ctx: AutoscalingContext) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        signals = [
            ReplicaSignal.from_metrics({name: metrics.get(name, {}).get(replica, 0.0) for name in SIGNALS})
            for replica in ctx.running_replicas
            if any(replica in metrics.get(name, {}) for name in SIGNALS)
        ]
        return desired_replicas(ctx.current_num_replicas, signals, self.rule), ctx.policy_state
