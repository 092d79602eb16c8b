"""Evidence: the numbers the doctor reads from one ``/v1/stats`` document.

A snapshot file is either the ``/v1/stats`` document itself or a saved drill (or ``servoscope
snapshot``) file that holds one under ``"stats"`` (its ``"stats_window"`` is used as the default
window). The document is read through its types (:mod:`servoscope.telemetry.document`): a missing
field is an error naming it, and documents from earlier versions are migrated first. Nothing else
in a drill snapshot is read: the doctor diagnoses from telemetry alone, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servoscope.stages import STAGE_NAMES, TOTAL
from servoscope.telemetry import document
from servoscope.telemetry.document import Deployment, ModelStats, StatsDocument, Summary, SystemMeans
from servoscope.telemetry.gpu import SLOWING_REASONS, GpuReading

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
    machine_cpu_utilization_ratio: float  # of the whole machine, 0–1
    process_cpu_cores: float  # cores the service process kept busy
    memory_available_bytes: float
    memory_total_bytes: float | None  # None where the source does not export it (Prometheus)
    swap_used_ratio: float | None
    arrived_per_s: float = 0.0  # demand, counted on arrival (0 where the service predates the count)
    # the accelerator, where there is one (None: no GPU, or a source that does not say)
    gpu_utilization_ratio: float | None = None  # the busiest GPU's, 0–1
    gpu_clock_ratio: float | None = None  # its SM clock ÷ the maximum
    gpu_throttle_reasons: tuple[str, ...] = ()  # the slowing reasons NVML gives now
    by_code: dict[str, float] = field(default_factory=dict)  # HTTP status → answers in the window
    covered_s: float = 0.0  # seconds the window holds (0: unknown)
    ingesting: int | None = None  # requests whose bodies are still arriving, all models (None: unknown)
    input_bytes_p50: float = 0.0
    deployment: Deployment | None = None  # what was running (None: a source that does not say)
    served_models: tuple[str, ...] = ()  # every model the document holds

    @property
    def total(self) -> Percentiles:
        return self.stages[TOTAL]

    @property
    def outside_cpu_cores(self) -> float:
        """CPU (in cores) used on the machine by anything other than the service process."""
        machine = self.machine_cpu_utilization_ratio * self.cpu_count
        return max(0.0, machine - self.process_cpu_cores)

    @property
    def capacity_per_s(self) -> float:
        """Requests per second the model instances could serve if fully busy (answered / busy)."""
        return self.answered_per_s / self.busy_ratio if self.busy_ratio > 0 else 0.0


def stats_document(doc: object) -> tuple[StatsDocument, str | None]:
    """The ``/v1/stats`` document of a snapshot, typed, and the window the snapshot names, if any."""
    if isinstance(doc, StatsDocument):
        return doc, None
    if not isinstance(doc, Mapping):
        raise EvidenceError(f"a snapshot is a JSON object, got {type(doc).__name__}")
    inner, window = doc, None
    if isinstance(doc.get("stats"), Mapping):
        inner, named = doc["stats"], doc.get("stats_window")
        window = named if isinstance(named, str) else None
    try:
        return document.read(inner), window
    except document.DocumentError as exc:
        raise EvidenceError(str(exc)) from None


def load(path: Path, model: str | None = None, window: str | None = None) -> Evidence:
    return from_document(json.loads(path.read_text()), model, window)


def from_document(doc: object, model: str | None = None, window: str | None = None) -> Evidence:
    """Evidence for ``model`` (default: the busiest) over ``window`` from a snapshot or a typed document."""
    stats, named_window = stats_document(doc)
    window = _window(stats, window or named_window or DEFAULT_WINDOW)
    name = model or busiest_model(stats, window, set(stats.models))
    if name not in stats.models:
        raise EvidenceError(f"model {name!r} not in snapshot; it has {sorted(stats.models)}")
    return _evidence(stats, name, window, stats.models[name])


def pair(
    base_doc: object,
    now_doc: object,
    model: str | None = None,
    window: str | None = None,
    base_window: str | None = None,
) -> tuple[Evidence, Evidence]:
    """(baseline, current) evidence of one model: ``model``, else the busiest one both documents serve (a
    model added or removed between them is a change the doctor reports, not the one it diagnoses)."""
    base, base_named = stats_document(base_doc)
    now, now_named = stats_document(now_doc)
    now_window = _window(now, window or now_named or DEFAULT_WINDOW)
    then_window = _window(base, base_window or window or base_named or now_window)
    both = set(base.models) & set(now.models)
    if model is not None:
        for stats, which in ((base, "baseline"), (now, "current")):
            if model not in stats.models:
                raise EvidenceError(f"model {model!r} is not in the {which} snapshot; it has {sorted(stats.models)}")
    elif not both:
        raise EvidenceError(
            f"the snapshots share no model: baseline {sorted(base.models)}, current {sorted(now.models)}"
        )
    name = model or busiest_model(now, now_window, both)
    return _evidence(base, name, then_window, base.models[name]), _evidence(now, name, now_window, now.models[name])


def _window(stats: StatsDocument, window: str) -> str:
    if window not in stats.windows_s:
        raise EvidenceError(f"window {window!r} not in snapshot; it has {sorted(stats.windows_s)}")
    return window


def busiest_model(stats: StatsDocument, window: str, among: set[str]) -> str:
    """The model with the most requests in ``window``, among ``among``; idle ones (no requests) count 0."""
    if not among:
        raise EvidenceError("snapshot has no models")
    return max(sorted(among), key=lambda m: _percentiles(stats.models[m].windows[window].stages.get(TOTAL)).count)


def _evidence(stats: StatsDocument, name: str, window: str, entry: ModelStats) -> Evidence:
    w = entry.windows[window]
    missing = [s for s in STAGE_NAMES if s not in w.stages]
    if missing:
        raise EvidenceError(f"the snapshot's stages lack {missing} (it has {list(w.stages)})")
    machine = _Machine(stats, window)
    busy = list(w.busy_ratio.values())
    return Evidence(
        model=name,
        window=window,
        stages={s: _percentiles(w.stages[s]) for s in STAGE_NAMES},
        delivery=_percentiles(w.delivery),
        answered_per_s=w.throughput.answered_per_s,
        refused_per_s=w.throughput.refused_per_s,
        errors_per_s=w.throughput.errors_per_s,
        refused_by_reason=dict(w.throughput.refused_by_reason),
        batch_mean_size=w.batches.mean_size or 0.0,  # None: no batch in the window
        batch_max_size=max((int(k) for k in w.batches.size_counts), default=0),
        busy_ratio=sum(busy) / len(busy) if busy else 0.0,
        instances=entry.instances or len(busy) or 1,
        input_bytes_p95=_percentiles(w.input_bytes).p95,
        input_pixels_p95=_percentiles(w.input_pixels).p95,
        preprocess_workers=stats.preprocess.workers,
        event_loop_lag_p95_s=_percentiles(stats.event_loop_lag_s[window]).p95,
        cpu_count=int(machine.value("cpu_count") or 1),
        machine_cpu_utilization_ratio=machine.value("cpu_utilization_ratio") or 0.0,
        process_cpu_cores=machine.value("process_cpu_cores") or 0.0,
        memory_available_bytes=machine.value("memory_available_bytes") or 0.0,
        memory_total_bytes=machine.value("memory_total_bytes"),
        swap_used_ratio=machine.value("swap_used_ratio"),
        arrived_per_s=w.throughput.arrived_per_s,
        **_gpu(stats.gpu, stats.system_means[window]),
        by_code=dict(w.throughput.by_code),
        covered_s=w.covered_s,
        ingesting=stats.ingesting,
        input_bytes_p50=_percentiles(w.input_bytes).p50,
        deployment=stats.deployment,
        served_models=tuple(sorted(stats.models)),
    )


class _Machine:
    """A machine reading over the window: its mean while serving where the service kept one, else the latest sample."""

    def __init__(self, stats: StatsDocument, window: str) -> None:
        self.means, self.latest = stats.system_means[window], stats.system

    def value(self, name: str) -> float | None:
        mean = getattr(self.means, name, None)
        if mean is not None:
            return float(mean)
        latest = getattr(self.latest, name, None) if self.latest is not None else None
        return None if latest is None else float(latest)


def _gpu(reading: GpuReading | None, means: SystemMeans) -> dict[str, Any]:
    """The GPU fields: window means where the service kept them, else the latest reading."""
    if reading is None or not reading.available:
        return {}
    latest = reading.window_values()
    kept = {k: v for k, v in means.model_dump().items() if k.startswith("gpu_") and v is not None}
    values = {**latest, **kept}
    reasons = sorted({r for d in reading.devices for r in d.throttle_reasons or () if r in SLOWING_REASONS})
    return {
        "gpu_utilization_ratio": values.get("gpu_utilization_ratio"),
        "gpu_clock_ratio": values.get("gpu_sm_clock_ratio"),
        "gpu_throttle_reasons": tuple(reasons),
    }


def _percentiles(summary: Summary | None) -> Percentiles:
    """A window's percentiles; zeros where it holds no samples."""
    if summary is None:
        return Percentiles(0.0, 0.0, 0.0, 0.0)
    return Percentiles(summary.count, summary.p50, summary.p95, summary.p99)
