"""Evidence: the numbers the doctor reads from one ``/v1/stats`` document.

A snapshot file is either the ``/v1/stats`` document itself or a saved drill snapshot that
holds one under ``"stats"`` (its ``"stats_window"`` is used as the default window). Nothing
else in a drill snapshot is read: the doctor diagnoses from telemetry alone, as in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servoscope.stages import STAGE_NAMES, TOTAL
from servoscope.telemetry.gpu import SLOWING_REASONS, GpuDevice, GpuReading

GPU_FIELDS = ("index", "utilization_gpu_percent", "sm_clock_mhz", "sm_clock_max_mhz", "throttle_reasons")

DEFAULT_WINDOW = "1m"


class EvidenceError(ValueError):
    """The snapshot holds no usable ``/v1/stats`` document, model or window."""


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class Evidence:
    """One model's window of telemetry, in base units (seconds, bytes, pixels, per second)."""

    model: str
    window: str
    stages: dict[str, Percentiles]
    delivery: Percentiles  # after the stages: until the client acknowledged the answer (zeros where unknown)
    answered_per_s: float
    refused_per_s: float
    errors_per_s: float
    refused_by_reason: dict[str, float]
    batch_mean_size: float
    batch_max_size: int | None  # None where the source cannot tell (PromQL: histogram buckets only)
    busy_ratio: float  # mean over the model's instances
    instances: int
    input_bytes_p95: float
    input_pixels_p95: float
    preprocess_workers: int
    event_loop_lag_p95_s: float
    cpu_count: int
    machine_cpu_percent: float  # of the whole machine, 0–100
    process_cpu_percent: float  # of one core, 0–100 × cores
    memory_available_bytes: float
    memory_total_bytes: float | None  # None where the source does not export it (Prometheus)
    swap_used_percent: float | None
    arrived_per_s: float = 0.0  # demand, counted on arrival (0 where the service predates the count)
    # the accelerator, where there is one (None: no GPU, or a source that does not say)
    gpu_utilization_percent: float | None = None  # the busiest GPU's, 0–100
    gpu_clock_ratio: float | None = None  # its SM clock ÷ the maximum
    gpu_throttle_reasons: tuple[str, ...] = ()  # the slowing reasons NVML gives now

    @property
    def total(self) -> Percentiles:
        return self.stages[TOTAL]

    @property
    def outside_cpu_cores(self) -> float:
        """CPU (in cores) used on the machine by anything other than the service process."""
        machine = self.machine_cpu_percent / 100.0 * self.cpu_count
        return max(0.0, machine - self.process_cpu_percent / 100.0)

    @property
    def capacity_per_s(self) -> float:
        """Requests per second the model instances could serve if fully busy (answered / busy)."""
        return self.answered_per_s / self.busy_ratio if self.busy_ratio > 0 else 0.0


def stats_document(doc: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The ``/v1/stats`` part of a snapshot, and the window the snapshot names, if any."""
    if "models" in doc and "windows_s" in doc:
        return doc, None
    inner = doc.get("stats")
    if isinstance(inner, dict) and "models" in inner:
        window = doc.get("stats_window")
        return inner, window if isinstance(window, str) else None
    raise EvidenceError("no /v1/stats document found (expected 'models' and 'windows_s', or a 'stats' key)")


def load(path: Path, model: str | None = None, window: str | None = None) -> Evidence:
    return from_document(json.loads(path.read_text()), model, window)


def from_document(doc: dict[str, Any], model: str | None = None, window: str | None = None) -> Evidence:
    stats, named_window = stats_document(doc)
    window = window or named_window or DEFAULT_WINDOW
    name = model or _busiest_model(stats, window)
    models = stats["models"]
    if name not in models:
        raise EvidenceError(f"model {name!r} not in snapshot; it has {sorted(models)}")
    entry = models[name]
    if window not in entry["windows"]:
        raise EvidenceError(f"window {window!r} not in snapshot; it has {sorted(entry['windows'])}")
    return _evidence(stats, name, window, entry)


def _busiest_model(stats: dict[str, Any], window: str) -> str:
    models = stats["models"]
    if not models:
        raise EvidenceError("snapshot has no models")
    return max(models, key=lambda m: _get(models[m], "windows", window, "stages", TOTAL, "count"))


def _evidence(stats: dict[str, Any], name: str, window: str, entry: dict[str, Any]) -> Evidence:
    w = entry["windows"][window]
    # the window's means of the machine readings where the service reports them, else the latest sample
    system = {**(stats.get("system") or {}), **((stats.get("system_means") or {}).get(window) or {})}
    busy = list((w.get("busy_ratio") or {}).values())
    sizes = [int(k) for k in (w.get("batches", {}).get("size_counts") or {})]
    return Evidence(
        model=name,
        window=window,
        stages={s: _percentiles(w["stages"].get(s, {})) for s in STAGE_NAMES},
        delivery=_percentiles(w.get("delivery") or {}),
        answered_per_s=_num(w, "throughput", "answered_per_s"),
        refused_per_s=_num(w, "throughput", "refused_per_s"),
        errors_per_s=_num(w, "throughput", "errors_per_s"),
        refused_by_reason=dict(w.get("throughput", {}).get("refused_by_reason") or {}),
        batch_mean_size=_num(w, "batches", "mean_size"),
        batch_max_size=max(sizes, default=0),
        busy_ratio=sum(busy) / len(busy) if busy else 0.0,
        instances=int(entry.get("instances") or len(busy) or 1),
        input_bytes_p95=_num(w, "input_bytes", "p95"),
        input_pixels_p95=_num(w, "input_pixels", "p95"),
        preprocess_workers=int(_num(stats, "preprocess", "workers")),
        event_loop_lag_p95_s=_num(stats, "event_loop_lag_s", window, "p95"),
        cpu_count=int(system.get("cpu_count") or 1),
        machine_cpu_percent=_num(system, "cpu_percent"),
        process_cpu_percent=_num(system, "process_cpu_percent"),
        memory_available_bytes=_num(system, "memory_available_bytes"),
        memory_total_bytes=_num(system, "memory_total_bytes"),
        swap_used_percent=_num(system, "swap_used_percent"),
        arrived_per_s=_num(w, "throughput", "arrived_per_s"),
        **_gpu(stats.get("gpu"), system),
    )


def _gpu(reading: Any, means: dict[str, Any]) -> dict[str, Any]:
    """The GPU fields: window means where the service kept them, else the latest reading."""
    if not isinstance(reading, dict) or not reading.get("available"):
        return {}
    latest = GpuReading(True, devices=tuple(
        GpuDevice(**{k: v for k, v in d.items() if k in GPU_FIELDS}) for d in reading.get("devices") or () if isinstance(d, dict)
    ))
    values = {**latest.window_values(), **{k: v for k, v in means.items() if k.startswith("gpu_")}}
    reasons = sorted({r for d in latest.devices for r in d.throttle_reasons or () if r in SLOWING_REASONS})
    return {
        "gpu_utilization_percent": values.get("gpu_utilization_percent"),
        "gpu_clock_ratio": values.get("gpu_sm_clock_ratio"),
        "gpu_throttle_reasons": tuple(reasons),
    }


def _percentiles(d: dict[str, Any]) -> Percentiles:
    return Percentiles(*(float(d.get(k) or 0.0) for k in ("count", "p50", "p95", "p99")))


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _num(d: Any, *keys: str) -> float:
    value = _get(d, *keys)
    return float(value) if isinstance(value, (int, float)) else 0.0
