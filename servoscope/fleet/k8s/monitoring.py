"""The PodMonitor that has the Prometheus Operator scrape every replica, and the PrometheusRule:
deploy/prometheus/rules.yml's groups as they are (one source for both ways of running
Prometheus), plus the autoscaling group of this deployment: the arrival rate the autoscalers scale on
and the queue wait, recorded per pod, and an alert on the wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from servoscope.fleet.k8s.arrival_rate import arrival_rate
from servoscope.fleet.k8s.queue_wait import mean_wait
from servoscope.fleet.k8s.target import Target
from servoscope.fleet.k8s.workload import PORT_NAME
from servoscope.fleet.plan import FleetPlan

SCRAPE_INTERVAL = "5s"  # as deploy/prometheus/prometheus.yml: the queue gauges move fast
WAIT_ALERT_FACTOR = 2  # the alert fires when the wait stays above twice the autoscaling target
WAIT_ALERT_FOR = "10m"
AUTOSCALING_GROUP = "servoscope-autoscaling"
WAIT_RECORD = "namespace_pod:servoscope_queue_wait_seconds:mean_rate1m"
RATE_RECORD = "namespace_pod:servoscope_requests_arrived:rate1m"  # the HPA's metric, per pod


class RulesError(ValueError):
    """deploy/prometheus/rules.yml missing or not a rules file."""


def default_rules_file() -> Path:
    """deploy/prometheus/rules.yml of the checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules.yml"


def pod_monitor(target: Target) -> dict[str, Any]:
    """``jobLabel``: the pods' app.kubernetes.io/name (servoscope) becomes ``job``, as the rules
    expect (ServoscopeTargetDown matches job="servoscope"); ``podTargetLabels`` keeps which
    deployment a series came from (app_kubernetes_io_instance), for KEDA's query and the alert."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": target.metadata(),
        "spec": {
            "selector": {"matchLabels": target.selector()},
            "jobLabel": "app.kubernetes.io/name",
            "podTargetLabels": ["app.kubernetes.io/instance"],
            "podMetricsEndpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        },
    }


def deploy_groups(path: Path) -> list[dict[str, Any]]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RulesError(f"rules file {path} does not exist (give --rules deploy/prometheus/rules.yml)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"rules file {path} cannot be read: {exc}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("groups"), list) or not loaded["groups"]:
        raise RulesError(f"rules file {path} has no rule groups")
    return loaded["groups"]


def autoscaling_group(plan: FleetPlan, target: Target) -> dict[str, Any]:
    threshold = WAIT_ALERT_FACTOR * plan.queue_wait_target_s
    fleet = mean_wait(target.series_matchers(), "namespace, app_kubernetes_io_instance")
    return {
        "name": AUTOSCALING_GROUP,
        "rules": [
            {"record": RATE_RECORD, "expr": arrival_rate(by="namespace, pod")},
            {"record": WAIT_RECORD, "expr": mean_wait(by="namespace, pod")},
            {
                "alert": "ServoscopeQueueWaitAboveTarget",
                "expr": f"(\n{fleet}\n) > {threshold:g}",
                "for": WAIT_ALERT_FOR,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "servoscope {{ $labels.app_kubernetes_io_instance }} in {{ $labels.namespace }}: "
                    "requests wait {{ $value | humanizeDuration }} on average",
                    "description": (
                        f"The mean wait (preprocess_wait + batch_wait) has stayed above {threshold:g} s, "
                        f"twice the autoscaling target, for {WAIT_ALERT_FOR}: the autoscaler is not adding capacity. "
                        "Runbook: is the HPA at maxReplicas (kubectl describe hpa), are new pods Pending "
                        "(no room on the nodes), or is the metric missing "
                        "(kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1)? "
                        "Run `servoscope doctor`."
                    ),
                },
            },
        ],
    }


def prometheus_rule(plan: FleetPlan, target: Target, rules_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": target.metadata(),
        "spec": {"groups": [*deploy_groups(rules_file), autoscaling_group(plan, target)]},
    }
