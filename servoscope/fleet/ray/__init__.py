"""servoscope on Ray Serve, live: Ray places, scales and restarts the replicas; each replica serves
servoscope's own HTTP front on its node; HAProxy (least connections) spreads requests over them and
retries a request once on another replica when one dies.

Why not Ray's HTTP proxy: measured side by side (``bench/fleet_ray.py``), Ray's proxy spends several
times the CPU per request of servoscope's own front, and it would hide the per-replica ``/metrics``,
``/v1/stats`` and admission that the load generator and the doctor read.
"""
