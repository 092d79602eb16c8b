"""``servoscope deploy k8s``: Kubernetes manifests generated from the settings and a fleet plan.

What is written (``write.render``): a Deployment, Service and PodDisruptionBudget; an HPA
(autoscaling/v2) on the arrival rate per pod served by the Prometheus Adapter, whose rules ship as a
ConfigMap; a KEDA ScaledObject as the alternative to those two; a PodMonitor and a PrometheusRule
(deploy/prometheus/rules.yml plus the autoscaling group); and the Containerfile of the image.
Nothing here talks to a cluster: the tests validate every file offline.
"""
