"""Where the fleet goes: names, namespace, image, and the Prometheus the autoscalers read."""

from __future__ import annotations

import re
from dataclasses import dataclass

from servoscope import __version__

APP = "servoscope"  # app.kubernetes.io/name of every pod; the PodMonitor makes it the `job` label
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TargetError(ValueError):
    """A deployment target that Kubernetes would refuse (a name that is not a DNS label …)."""


@dataclass(frozen=True)
class Target:
    name: str = APP
    namespace: str = APP
    image: str = f"servoscope:{__version__}"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    adapter_namespace: str = "monitoring"

    def __post_init__(self) -> None:
        names = (("name", self.name), ("namespace", self.namespace), ("adapter namespace", self.adapter_namespace))
        for field, value in names:
            if not DNS_LABEL.match(value):
                raise TargetError(f"{field} must be a DNS label (a-z, 0-9, '-', at most 63), got {value!r}")
        if not self.image or any(c.isspace() for c in self.image):
            raise TargetError(f"image must be a non-empty reference without spaces, got {self.image!r}")
        if not re.match(r"^https?://[^\s/]+", self.prometheus_url):
            raise TargetError(f"prometheus URL must be http(s)://host[:port], got {self.prometheus_url!r}")

    def selector(self) -> dict[str, str]:
        """The labels that pick this deployment's pods."""
        return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": self.name}

    def labels(self) -> dict[str, str]:
        return {**self.selector(), "app.kubernetes.io/version": __version__, "app.kubernetes.io/managed-by": APP}

    def metadata(self, name: str | None = None, namespace: str | None = None) -> dict[str, object]:
        return {"name": name or self.name, "namespace": namespace or self.namespace, "labels": self.labels()}

    def series_matchers(self) -> str:
        """PromQL label matchers for this deployment's series, as the PodMonitor labels them
        (``podTargetLabels`` turns the pod label app.kubernetes.io/instance into app_kubernetes_io_instance)."""
        return f'namespace="{self.namespace}",app_kubernetes_io_instance="{self.name}"'
