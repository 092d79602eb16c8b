"""The scaling signal, in one place: requests arriving at a pod per second over the last minute
(``servoscope_requests_arrived_total``: counted on arrival, refused ones included, so it goes on
growing with the demand where the answered rate stops at saturation). The Prometheus Adapter serves
it per pod to the HPA, KEDA reads it for the whole deployment, and the PrometheusRule records it,
all from these expressions.

It is proportional to the load, which HPA's rule (desired = ceil(pods × average / target)) needs:
twice the arrivals per pod ask for twice the pods. The target is what one replica answers with P95
within the objective (the plan's ``replica_capacity_per_s``) times a utilization headroom (the
plan's ``target_utilization``): the rate at which a replica is full enough, not yet late.
"""

from __future__ import annotations

from servoscope.fleet.k8s.queue_wait import WINDOW

COUNTER = "servoscope_requests_arrived_total"
RATE_METRIC = "servoscope_requests_arrived_per_second"  # the name the Prometheus Adapter serves it under


def arrival_rate(matchers: str = "", by: str | None = None, window: str = WINDOW) -> str:
    """PromQL: requests a second that arrived over ``window``, summed over the models, per ``by``
    group (one series without it)."""
    group = f" by ({by})" if by is not None else ""
    return f"sum{group} (rate({COUNTER}{{{matchers}}}[{window}]))"
