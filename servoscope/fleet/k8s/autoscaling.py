"""Autoscaling on the queue-wait signal (``queue_wait.py``): an HPA (autoscaling/v2) reading it per pod
through the Prometheus Adapter, or, as the alternative, a KEDA ScaledObject reading it from
Prometheus for the whole deployment. Apply one of the two: KEDA creates an HPA of its own.

The behaviour, the same for both:

- up: at once (no stabilization), by +100% or +4 pods per 15 s, whichever is more (HPA's own
  pace). Waiting rises steeply near a replica's knee, so the ratio to the target says "more"
  early and loudly; the policies bound the jump.
- down: only after 5 minutes of lower recommendations, and by one pod (or 10%, whichever is more)
  a minute. Near-zero waiting says the fleet has headroom, not how much: each step down is
  re-measured before the next, so the fleet does not fall through its knee and bounce back.
"""

from __future__ import annotations

from typing import Any

from servoscope.fleet.k8s.queue_wait import WAIT_METRIC, mean_wait, quantity
from servoscope.fleet.k8s.target import Target
from servoscope.fleet.k8s.yamltext import dump
from servoscope.fleet.plan import FleetPlan
from servoscope.stages import TOTAL

ADAPTER_CONFIG_KEY = "config.yaml"  # the key the Prometheus Adapter's chart reads (rules.existing)
KEDA_POLLING_S = 15  # KEDA's default is 30: half, to follow the wait as the HPA does


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


def hpa(plan: FleetPlan, target: Target) -> dict[str, Any]:
    """Pods metric: the HPA averages the wait over the pods and sizes the fleet so that the average
    comes back to the target (desired = ceil(current × average / target), ±10% tolerance)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": target.metadata(),
        "spec": {
            "scaleTargetRef": _scale_target(target),
            "minReplicas": plan.replicas.min,
            "maxReplicas": plan.replicas.max,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": WAIT_METRIC},
                        "target": {"type": "AverageValue", "averageValue": quantity(plan.queue_wait_target_s)},
                    },
                }
            ],
            "behavior": behavior(),
        },
    }


def adapter_rule() -> dict[str, Any]:
    """One Prometheus Adapter discovery rule: every pod with served requests gets the metric.
    ``<<.LabelMatchers>>`` and ``<<.GroupBy>>`` are the adapter's (namespace and pods asked for; pod)."""
    count = "servoscope_stage_duration_seconds_count"
    return {
        "seriesQuery": f'{count}{{namespace!="",pod!="",stage="{TOTAL}"}}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": f"^{count}$", "as": WAIT_METRIC},
        "metricsQuery": mean_wait("<<.LabelMatchers>>", "<<.GroupBy>>") + "\n",
    }


def adapter_config() -> dict[str, Any]:
    return {"rules": [adapter_rule()]}


def adapter_configmap(target: Target) -> dict[str, Any]:
    """The adapter's rules as a ConfigMap in the adapter's namespace (its chart: ``rules.existing``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": target.metadata(f"{target.name}-prometheus-adapter", target.adapter_namespace),
        "data": {ADAPTER_CONFIG_KEY: dump(adapter_config())},
    }


def keda_query(target: Target) -> str:
    """The deployment's mean wait, one series (KEDA refuses a query that returns several)."""
    return mean_wait(target.series_matchers())


def scaled_object(plan: FleetPlan, target: Target) -> dict[str, Any]:
    """``metricType: Value``: the HPA KEDA creates compares the deployment's mean wait itself with
    the threshold, the same arithmetic as the Pods metric above."""
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
                    "name": "queue-wait",
                    "metricType": "Value",
                    "metadata": {
                        "serverAddress": target.prometheus_url,
                        "query": keda_query(target),
                        "threshold": f"{plan.queue_wait_target_s:g}",
                    },
                }
            ],
        },
    }
