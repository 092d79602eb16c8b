"""The Deployment, its Service and its PodDisruptionBudget.

The drain, as Kubernetes and servoscope do it together when a pod is deleted:

1. the pod leaves the Service's endpoints, and at the same time its ``preStop`` hook sleeps
   ``drain_delay_s``: the proxies and load balancers learn of the removal while the pod still
   answers everything that reaches it;
2. then SIGTERM: servoscope drains (``server/run.py``): ``/v2/health/ready`` turns 503, requests
   still arriving on open connections get 503, and the open ones are answered, for at most
   ``shutdown_timeout_s``;
3. ``terminationGracePeriodSeconds`` covers both, with a margin, before the kubelet's SIGKILL.
"""

from __future__ import annotations

import math
from typing import Any

from servoscope.fleet.k8s.env import env_vars
from servoscope.fleet.k8s.target import Target
from servoscope.fleet.plan import FleetPlan
from servoscope.settings import Settings

CONTAINER = "servoscope"
PORT_NAME = "http"
UID = 10001  # the image's non-root user (Containerfile: USER)
KILL_MARGIN_S = 5  # between the end of the longest drain and SIGKILL
STARTUP_DEADLINE_S = 120  # the model loads before the port opens


def grace_period_s(plan: FleetPlan, settings: Settings) -> int:
    """``terminationGracePeriodSeconds``: the preStop sleep, then the whole drain, then a margin."""
    return plan.drain_delay_s + math.ceil(settings.shutdown_timeout_s) + KILL_MARGIN_S


def cpu_quantity(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{round(cores * 1000)}m"


def resources(plan: FleetPlan) -> dict[str, Any]:
    """Requests equal to limits: the Guaranteed QoS class. With whole cores, the static CPU manager
    gives the pod cores of its own, which is what one ONNX Runtime session per core wants."""
    amounts = {"cpu": cpu_quantity(plan.cpu_cores), "memory": f"{plan.memory_mib}Mi"}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _probe(path: str, period_s: int, failures: int, timeout_s: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failures,
    }


def container(settings: Settings, plan: FleetPlan, image: str) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": PORT_NAME, "containerPort": settings.port, "protocol": "TCP"}],
        "env": env_vars(settings),
        "resources": resources(plan),
        "startupProbe": _probe("/v2/health/live", 2, STARTUP_DEADLINE_S // 2, 2),
        "readinessProbe": _probe("/v2/health/ready", 5, 2, 2),
        "livenessProbe": _probe("/v2/health/live", 10, 3, 5),
        "lifecycle": {"preStop": {"sleep": {"seconds": plan.drain_delay_s}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": name, "mountPath": path} for name, path, _ in _volumes(settings, plan)],
    }


def _volumes(settings: Settings, plan: FleetPlan) -> list[tuple[str, str, dict[str, Any]]]:
    """Writable places on a read-only root: /tmp, and /dev/shm (sized) for process isolation,
    whose instances take their batches through shared memory."""
    found = [("tmp", "/tmp", {"sizeLimit": "256Mi"})]
    if settings.model_overrides.isolation == "process":
        found.append(("shm", "/dev/shm", {"medium": "Memory", "sizeLimit": f"{max(64, plan.memory_mib // 4)}Mi"}))
    return found


def deployment(settings: Settings, plan: FleetPlan, target: Target) -> dict[str, Any]:
    """No ``replicas``: the autoscaler owns the count (from ``replicas.min``), and re-applying
    this file must not reset it."""
    pod = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace_period_s(plan, settings),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": target.selector()},
            }
        ],
        "containers": [container(settings, plan, target.image)],
        "volumes": [{"name": name, "emptyDir": source} for name, _, source in _volumes(settings, plan)],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": target.metadata(),
        "spec": {
            "selector": {"matchLabels": target.selector()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": target.labels()}, "spec": pod},
        },
    }


def service(settings: Settings, target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": target.metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": target.selector(),
            "ports": [{"name": PORT_NAME, "port": settings.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def disruption_budget(target: Target) -> dict[str, Any]:
    """Voluntary evictions (node drains, upgrades) take one replica at a time, each drained as above."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": target.metadata(),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": target.selector()}},
    }
