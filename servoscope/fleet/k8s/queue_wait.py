"""The autoscaling signal, in one place: the mean time a served request waited in the service's
two queues (``preprocess_wait`` + ``batch_wait``: the queue wait) over the last minute. The
Prometheus Adapter serves it per pod to the HPA, KEDA reads it for the whole deployment, and the
PrometheusRule records and alerts on it, all from this one expression.

Waiting is what grows first when a replica runs short of capacity, and it is what the latency
objective loses: inference and preprocessing take the same time at any load until the cores are
shared. A target well under the objective (the plan's ``queue_wait_target_s``) adds replicas
before the P95 suffers. The mean (a ratio of two counters) aggregates across pods exactly, which
a percentile does not.
"""

from __future__ import annotations

from servoscope.stages import TOTAL, Stage

HISTOGRAM = "servoscope_stage_duration_seconds"
WAIT_STAGES: tuple[str, ...] = (Stage.PREPROCESS_WAIT.value, Stage.BATCH_WAIT.value)
WAIT_METRIC = "servoscope_queue_wait_seconds"  # the name the Prometheus Adapter serves it under
WINDOW = "1m"


def mean_wait(matchers: str = "", by: str | None = None, window: str = WINDOW) -> str:
    """PromQL: seconds a served request waited on average over ``window``, per ``by`` group (one
    series without it). An idle group reads 0, not NaN: the divisor is clamped above zero."""
    sep = "," if matchers else ""
    group = f" by ({by})" if by is not None else ""
    waited = f'rate({HISTOGRAM}_sum{{stage=~"{"|".join(WAIT_STAGES)}"{sep}{matchers}}}[{window}])'
    served = f'rate({HISTOGRAM}_count{{stage="{TOTAL}"{sep}{matchers}}}[{window}])'
    return f"sum{group} ({waited})\n/\nclamp_min(sum{group} ({served}), 1e-9)"


def quantity(seconds: float) -> str:
    """A Kubernetes quantity for a value in seconds, in thousandths: 0.05 → "50m"."""
    return f"{round(seconds * 1000)}m"
