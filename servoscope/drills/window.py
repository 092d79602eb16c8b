"""One measured window: traffic against a fresh service, then its ``/v1/stats`` snapshot, the
relevant ``/metrics`` values, the client-side figures and the CPU used, as one JSON document."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from servoscope.drills.service import Service
from servoscope.drills.traffic import Traffic, WindowLoad, run_window
from servoscope.loadgen import Sample, percentile
from servoscope.loadgen.cpu import CpuMeter
from servoscope.models.prepare import DEFAULT_MODEL
from servoscope.stages import TOTAL, parse_server_timing
from servoscope.telemetry import document

METRICS_KEPT = (
    "servoscope_fault_injected",
    "servoscope_model_busy_ratio",
    "servoscope_queue_depth",
    "servoscope_requests_pending",
    "servoscope_preprocess_workers",
    "servoscope_system_cpu_utilization_ratio",
    "servoscope_process_cpu_cores",
    "servoscope_system_memory_available_bytes",
    "servoscope_process_resident_memory_bytes",
    "servoscope_requests",
    "servoscope_refused",
    "servoscope_system_context_switches_per_second",
)


def stats_window_label(window_s: float, startup_slack_s: float = 15.0) -> str:
    """The /v1/stats window that holds all of a window run on a fresh service: ``1m`` while the
    service's whole life fits in it, else ``5m``."""
    return "1m" if window_s + startup_slack_s <= 60 else "5m"


def metric_values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(METRICS_KEPT) and not s.name.endswith("_created"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def quantiles_ms(values: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": 1000 * percentile(values, q) for q in (50, 95, 99)}


def client_figures(samples: list[Sample], duration_s: float) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    return {
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "ok_per_s": len(ok) / duration_s,
        "latency_ms": quantiles_ms([s.latency_s for s in ok]),
        "delivery_ms": quantiles_ms(delivery_s(ok)),
    }


def delivery_s(samples: list[Sample]) -> list[float]:
    """Per answered request, time outside the server: client latency minus the server's ``total``
    (sending, the answer's trip and its reading by the client; the sender's own lateness too)."""
    out = []
    for s in samples:
        total = parse_server_timing(s.server_timing).get(TOTAL)
        if total is not None:
            out.append(max(0.0, s.latency_s - total))
    return out


def gauge_summary(series: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = [k for k in (series[0] if series else {}) if k != "t_s"]
    return {k: {"mean": sum(p[k] for p in series) / len(series), "max": max(p[k] for p in series)} for k in keys}


def settled_stats(service: Service, label: str, answered: int, deadline_s: float = 5.0) -> dict[str, Any]:
    """``/v1/stats`` once its window counts every answer the clients got (or at the deadline)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.05
    while True:
        stats = service.json("/v1/stats")
        counted = sum(document.read(stats).models[DEFAULT_MODEL].windows[label].throughput.by_code.values())
        if counted >= answered or time.monotonic() >= deadline:
            return stats
        time.sleep(delay)  # poll backoff while the service records the last answers
        delay = min(2 * delay, 0.5)


def measure(service: Service, traffic: Traffic, neighbour_pids: list[int]) -> tuple[dict[str, Any], WindowLoad]:
    meters = {
        "service": CpuMeter([service.pid]),
        "drill_client": CpuMeter([os.getpid()]),
        "neighbours": CpuMeter(neighbour_pids),
    }
    for m in meters.values():
        m.start()
    load = run_window(service.endpoint, traffic)
    use = {name: m.stop() for name, m in meters.items()}
    answered = sum(1 for x in load.samples + load.slow_samples if x.status)
    stats = settled_stats(service, stats_window_label(traffic.duration_s), answered)
    doc = {
        "traffic": traffic.to_json(),
        "flags": list(service.flags),
        "config": service.json("/v1/config"),
        "stats_window": stats_window_label(traffic.duration_s),
        "stats": stats,
        "answered_by_clients": answered,  # beside the document, which holds only what the service reports
        "metrics": metric_values(service.get("/metrics").decode()),
        "client": client_figures(load.samples + load.slow_samples, load.duration_s),
        "client_slow": client_figures(load.slow_samples, load.duration_s) if load.slow_samples else None,
        "sender_late_count": load.sender_late,
        "gauges": gauge_summary(load.gauges),
        "gauge_series": load.gauges,
        "cpu_cores": {
            "service": use["service"].ours_cores,
            "drill_client": use["drill_client"].ours_cores,
            "neighbours": use["neighbours"].ours_cores if neighbour_pids else 0.0,
            "machine_busy": use["service"].busy_cores,
            "steal": use["service"].steal_cores,
        },
        "neighbour_pids": neighbour_pids,
    }
    return doc, load
