"""Autoscaling on the arrival rate per pod (``arrival_rate.py``): an HPA (autoscaling/v2) reading it
per pod through the Prometheus Adapter, or, as the alternative, a KEDA ScaledObject reading it from
Prometheus for the whole deployment. Apply one of the two: KEDA creates an HPA of its own.

The target is the plan's ``replica_capacity_per_s`` × ``target_utilization`` (default 33.7 × 0.8 =
27 req/s a pod): HPA's proportional rule (desired = ceil(pods × average / target)) then sizes the
fleet for the demand, as the planner would. The queue wait is not a metric here: it is flat below a
replica's knee and explodes above it, so HPA's rule on it scaled down a pod a minute until the fleet
passed the knee and doubled back (15 reversals an hour on steady load, simulated: bench/README.md).
As a second, upward-only metric it took the fleet to maxReplicas on a 3× spike (40 violation s
against 59, for 2.6× the replica-seconds): worse than a lower utilization target for the same cost.
The Prometheus Adapter still serves it, and the PrometheusRule alerts on it.

The behaviour, the same for both:

- up: at once (no stabilization), by +100% or +4 pods per 15 s, whichever is more (HPA's own pace).
- down: only after 5 minutes of lower recommendations, and by one pod (or 10%, whichever is more)
  a minute, so that a dip of a few minutes does not cost the replicas the next rise needs.
"""

from __future__ import annotations

from typing import Any

from servoscope.fleet.k8s.arrival_rate import COUNTER, RATE_METRIC, arrival_rate
from servoscope.fleet.k8s.queue_wait import WAIT_METRIC, mean_wait, quantity
from servoscope.fleet.k8s.target import Target
from servoscope.fleet.k8s.yamltext import dump
from servoscope.fleet.plan import FleetPlan
from servoscope.stages import TOTAL

ADAPTER_CONFIG_KEY = "config.yaml"  # the key the Prometheus Adapter's chart reads (rules.existing)
KEDA_POLLING_S = 15  # KEDA's default is 30: half, to follow the demand as the HPA does


def _policy(kind: str, value: int, period_s: int) -> dict[str, Any]:
    return {"type": kind, "value": value, "periodSeconds": period_s}


def behavior() -> dict[str, Any]:
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [_policy("Percent", 100, 15), _policy("Pods", 4, 15)],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Max",
            "policies": [_policy("Pods", 1, 60), _policy("Percent", 10, 60)],
        },
    }


def _scale_target(target: Target) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.name}


def _pods_metric(name: str, average: str) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average}},
    }


def hpa(plan: FleetPlan, target: Target) -> dict[str, Any]:
    """Pods metric: the HPA averages the arrival rate over the pods and sizes the fleet so that the
    average comes back to the target (desired = ceil(current × average / target), ±10% tolerance)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": target.metadata(),
        "spec": {
            "scaleTargetRef": _scale_target(target),
            "minReplicas": plan.replicas.min,
            "maxReplicas": plan.replicas.max,
            "metrics": [_pods_metric(RATE_METRIC, quantity(plan.arrivals_target_per_s))],
            "behavior": behavior(),
        },
    }


def adapter_rule(series: str, matchers: str, served_as: str, query: str) -> dict[str, Any]:
    """One Prometheus Adapter discovery rule: every pod with the ``series`` gets the metric ``served_as``.
    ``<<.LabelMatchers>>`` and ``<<.GroupBy>>`` in ``query`` are the adapter's (namespace and pods asked
    for; pod)."""
    return {
        "seriesQuery": f'{series}{{namespace!="",pod!=""{matchers}}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{series}$", "as": served_as},
        "metricsQuery": query + "\n",
    }


def adapter_config() -> dict[str, Any]:
    """The scaling metric, and the queue wait per pod (not scaled on: served for ``kubectl get --raw``)."""
    labels, group = "<<.LabelMatchers>>", "<<.GroupBy>>"
    rate = adapter_rule(COUNTER, "", RATE_METRIC, arrival_rate(labels, group))
    count = "servoscope_stage_duration_seconds_count"
    wait = adapter_rule(count, f',stage="{TOTAL}"', WAIT_METRIC, mean_wait(labels, group))
    return {"rules": [rate, wait]}


def adapter_configmap(target: Target) -> dict[str, Any]:
    """The adapter's rules as a ConfigMap in the adapter's namespace (its chart: ``rules.existing``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": target.metadata(f"{target.name}-prometheus-adapter", target.adapter_namespace),
        "data": {ADAPTER_CONFIG_KEY: dump(adapter_config())},
    }


def keda_query(target: Target) -> str:
    """The deployment's arrival rate, one series (KEDA refuses a query that returns several)."""
    return arrival_rate(target.series_matchers())


def scaled_object(plan: FleetPlan, target: Target) -> dict[str, Any]:
    """``metricType: AverageValue``: the HPA KEDA creates divides the deployment's arrival rate by
    the threshold per pod (desired = ceil(rate / threshold)), the same arithmetic as the Pods metric above."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": target.metadata(),
        "spec": {
            "scaleTargetRef": _scale_target(target),
            "minReplicaCount": plan.replicas.min,
            "maxReplicaCount": plan.replicas.max,
            "pollingInterval": KEDA_POLLING_S,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior()}},
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "arrival-rate",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": target.prometheus_url,
                        "query": keda_query(target),
                        "threshold": f"{plan.arrivals_target_per_s:g}",
                    },
                }
            ],
        },
    }
