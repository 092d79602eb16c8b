"""servoscope on Ray Serve, live: Ray places, scales and restarts the replicas; each replica serves
servoscope's own HTTP front on its node; HAProxy (least connections) spreads requests over them and
retries a request once on another replica when one dies.

Why not Ray's HTTP proxy: measured side by side (``bench/fleet_ray.py``), Ray's proxy spent 15–17×
the CPU per request of HAProxy and servoscope's own front (2 cores), and it would hide the per-replica ``/metrics``,
``/v1/stats`` and admission that the load generator and the doctor read.
"""
