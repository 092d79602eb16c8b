"""Running servoscope as a fleet: the plan (replicas, resources, per-replica settings) and what
each engine is given from it (``k8s``: Kubernetes manifests, generated and validated offline;
``ray``: the fleet live on Ray Serve, HAProxy in front)."""
