"""The ``/v1/stats`` document, typed and versioned: the server writes it through these types and
every reader (the doctor, the dashboard's tests, later the planner and the fleet) reads it
through the same ones. All times in seconds, rates per second.

A field that is missing, or of the wrong type, is an error that names the field (its path in the
document, e.g. ``models.resnet.windows.1m.throughput.arrived_per_s``). Fields that may be unknown
are typed ``… | None`` and must still be present. Older documents are read through explicit
migrations: one saved before the document had a ``schema_version`` through
:func:`migrate_unversioned` (to version 1), a version 1 document through :func:`migrate_v1` (to
version 2: the names of README's "Names" table), a version 2 one through :func:`migrate_v2` (to
version 3: it had no ``deployment``, every value of it unknown), a version 3 one through
:func:`migrate_v3` (to version 4, which adds the distributions themselves: each window's ``sketches``,
every series it has a summary of as serialized DDSketches, :mod:`servoscope.telemetry.sketchwire`, and
each model's ``lifetime_total``, the ``total`` of every answered request since start, so a fleet merges
replicas exactly and an outlier test compares the requests between two reads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from servoscope.telemetry.gpu import GpuReading
from servoscope.telemetry.system import SystemReading
from servoscope.validation import fault_lines

SCHEMA_VERSION: Final = 4
SettingValue = str | int | float | bool | None


class DocumentError(ValueError):
    """Not a ``/v1/stats`` document this version reads; the message names the field at fault."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Summary(_Frozen):
    """A window's distribution (from a DDSketch, 1% relative accuracy); ``None`` where it holds nothing."""

    count: float
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float


class Throughput(_Frozen):
    arrived_per_s: float  # demand: from the first arrival to the last in the window
    answered_per_s: float
    ok_per_s: float
    errors_per_s: float
    refused_per_s: float
    by_code: dict[str, float]  # HTTP status → answers in the window
    refused_by_reason: dict[str, float]  # refusal reason → refusals in the window


class Batches(_Frozen):
    per_s: float
    mean_size: float | None  # None: no batch in the window
    size_counts: dict[str, float]  # batch size → batches, by size


class ModelWindow(_Frozen):
    covered_s: float  # seconds of data the window holds (less than its length just after start)
    stages: dict[str, Summary | None]  # every stage of the document's ``stages``
    delivery: Summary | None  # after the stages: until the client acknowledged the answer
    throughput: Throughput
    batches: Batches
    busy_ratio: dict[str, float]  # model instance → share of the window it ran batches
    input_bytes: Summary | None
    input_pixels: Summary | None
    sketches: dict[str, str]  # series (a stage, delivery, input_bytes, input_pixels) → its DDSketch; {}: migrated


class Queues(_Frozen):
    pending: int  # admitted, not yet answered
    batch_queue: int
    batches_in_flight: int
    concurrency_limit: int | None  # None: a migrated document from before adaptive admission


class ModelStats(_Frozen):
    queues: Queues
    instances: int
    windows: dict[str, ModelWindow]  # every window of the document's ``windows_s``
    lifetime_total: str | None  # DDSketch of ``total`` over every answered request since start; None: migrated
    variant: str = ""  # during a rollout: baseline or canary (the metrics' variant label); "": none


class Preprocess(_Frozen):
    queue: int
    busy: int
    workers: int


class SystemMeans(_Frozen):
    """Means of the 1 s machine samples over a window, counting only seconds the service answered
    requests in; ``None`` where no sample was taken (for the GPU's: where there is none). Ratios are
    0–1; ``process_cpu_cores`` is CPU seconds per second."""

    cpu_utilization_ratio: float | None
    process_cpu_cores: float | None
    memory_available_bytes: float | None
    swap_used_ratio: float | None
    gpu_utilization_ratio: float | None
    gpu_sm_clock_ratio: float | None


class ModelDeployment(_Frozen):
    """What one served model runs as: its version and file, instances and batching; ``None``: unknown."""

    version: str | None
    file_bytes: int | None  # the model file's size: a new file under the same version shows here
    instances: int | None
    intra_op_threads: int | None  # per instance, as sized at start
    provider: str | None
    isolation: str | None  # thread or process
    instance_pids: tuple[int | None, ...]  # the process running each instance
    batching: dict[str, SettingValue]  # the model's batching policy (max_batch_size, max_queue_delay_s …)


class Deployment(_Frozen):
    """What is running: the evidence of a deploy, a restart or a configuration change between two
    documents. Documents from before it say ``None`` (unknown) and hold no entries."""

    servoscope_version: str | None
    packages: dict[str, str]  # distribution → version, for the packages that set the service's speed
    process_id: int | None
    process_started: float | None  # wall clock (Unix seconds) the serving process started
    settings: dict[str, SettingValue]  # the effective settings, nested keys dotted (model_overrides.instances)
    models: dict[str, ModelDeployment]


UNKNOWN_DEPLOYMENT = Deployment(
    servoscope_version=None, packages={}, process_id=None, process_started=None, settings={}, models={}
)


class StatsDocument(_Frozen):
    schema_version: Literal[4]
    time: float  # wall clock (Unix seconds) when the document was computed
    windows_s: dict[str, float]  # window label → its length
    windows_ago_s: dict[str, float]  # window label → how far back it ends
    stages: tuple[str, ...]
    models: dict[str, ModelStats]
    preprocess: Preprocess
    ingesting: int | None  # requests whose bodies are still arriving (no model's place); None: migrated
    event_loop_lag_s: dict[str, Summary | None]  # by window
    system_means: dict[str, SystemMeans]  # by window
    system: SystemReading | None  # the latest machine sample (None before the first)
    gpu: GpuReading | None
    deployment: Deployment

    @model_validator(mode="after")
    def _windows_and_stages_agree(self) -> StatsDocument:
        windows = set(self.windows_s)
        _same_keys("windows_ago_s", self.windows_ago_s, windows)
        _same_keys("event_loop_lag_s", self.event_loop_lag_s, windows)
        _same_keys("system_means", self.system_means, windows)
        for name, model in self.models.items():
            _same_keys(f"models.{name}.windows", model.windows, windows)
            for label, window in model.windows.items():
                _same_keys(f"models.{name}.windows.{label}.stages", window.stages, set(self.stages))
        return self

    def to_json(self) -> dict[str, Any]:
        """The document as JSON values (what ``/v1/stats`` answers)."""
        return self.model_dump(mode="json")


def _same_keys(where: str, found: Mapping[str, Any], expected: set[str]) -> None:
    missing, extra = sorted(expected - set(found)), sorted(set(found) - expected)
    if missing or extra:
        said = [f"lacks {missing}" if missing else "", f"has unknown {extra}" if extra else ""]
        raise ValueError(f"{where} {' and '.join(s for s in said if s)} (expected the keys {sorted(expected)})")


def read(raw: object) -> StatsDocument:
    """The typed document from its JSON values: the current version as is, earlier ones migrated first."""
    if not isinstance(raw, Mapping):
        raise DocumentError(f"a /v1/stats document is a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version is None:
        raw = migrate_unversioned(raw)
    elif version not in MIGRATIONS and version != SCHEMA_VERSION:
        raise DocumentError(
            f"schema_version {version!r} is not one this servoscope reads (1 to {SCHEMA_VERSION}, or none)"
        )
    while (at := raw.get("schema_version")) in MIGRATIONS:  # each version to the next, up to the current one
        raw = MIGRATIONS[at](raw)
    try:
        return StatsDocument.model_validate(raw)
    except ValidationError as exc:
        raise DocumentError(describe(exc)) from None


MAX_FAULTS_SAID = 5


def describe(exc: ValidationError) -> str:
    """The faults, each naming the field by its path (``models.m.queues.pending: Field required``); the
    first few, and how many more."""
    faults = fault_lines(exc, "document")
    more = len(faults) - MAX_FAULTS_SAID
    said = "; ".join(faults[:MAX_FAULTS_SAID]) + (f"; and {more} more" if more > 0 else "")
    return f"not a /v1/stats document: {said}"


def migrate_unversioned(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A document from before ``schema_version`` (it may say ``"schema": 1``, but its field set grew
    under that number) as version 1 (its names; :func:`migrate_v1` renames them). Only what those
    versions did not record is filled in, each the way the doctor read its absence; everything else
    must be there, as in version 1:

    - ``windows_ago_s``: 0 for every window (each ended at ``time``);
    - ``system_means``: every mean ``None`` (not kept: readers take the latest ``system`` sample);
    - per model, ``queues.concurrency_limit``: ``None`` (before adaptive admission);
    - per window, ``delivery``: ``None`` (not measured); ``throughput.arrived_per_s``: 0 (not counted);
    - ``ingesting``: ``None`` (before ingest was its own stage of admission);
    - ``drill_answered_by_clients``, which the drill runner once kept inside the document, is dropped.
    """
    doc = {k: v for k, v in raw.items() if k not in ("schema", "drill_answered_by_clients")}
    doc.setdefault("ingesting", None)
    doc["schema_version"] = 1
    windows = list(doc.get("windows_s") or {})
    doc.setdefault("windows_ago_s", {label: 0.0 for label in windows})
    means = dict(doc.get("system_means") or {})
    unknown = dict.fromkeys(V1_MEANS)
    doc["system_means"] = {label: {**unknown, **means.get(label, {})} for label in windows}
    models = doc.get("models")
    if isinstance(models, Mapping):
        doc["models"] = {name: _migrate_model(entry) for name, entry in models.items()}
    return doc


def migrate_v2(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A version 2 document as version 3: ``deployment`` unknown (``None`` values, no entries)."""
    return {**raw, "schema_version": 3, "deployment": UNKNOWN_DEPLOYMENT.model_dump(mode="json")}


def migrate_v3(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A version 3 document as version 4: no sketches were kept (``sketches`` {}, ``lifetime_total``
    None), so a fleet cannot merge it exactly and says so."""
    doc = {**raw, "schema_version": 4}
    models = doc.get("models")
    if isinstance(models, Mapping):
        doc["models"] = {name: _without_sketches(entry) for name, entry in models.items()}
    return doc


def _without_sketches(entry: Any) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    out = {"lifetime_total": None, **entry}
    if isinstance(out.get("windows"), Mapping):
        out["windows"] = {
            label: {"sketches": {}, **w} if isinstance(w, Mapping) else w for label, w in out["windows"].items()
        }
    return out


def _migrate_model(entry: Any) -> Any:
    if not isinstance(entry, Mapping):
        return entry
    out = dict(entry)
    if isinstance(out.get("queues"), Mapping):
        out["queues"] = {"concurrency_limit": None, **out["queues"]}
    if isinstance(out.get("windows"), Mapping):
        out["windows"] = {label: _migrate_window(w) for label, w in out["windows"].items()}
    return out


def _migrate_window(window: Any) -> Any:
    if not isinstance(window, Mapping):
        return window
    out = {"delivery": None, **window}
    if isinstance(out.get("throughput"), Mapping):
        out["throughput"] = {"arrived_per_s": 0.0, **out["throughput"]}
    return out


V1_MEANS = (
    "cpu_percent",
    "process_cpu_percent",
    "memory_available_bytes",
    "swap_used_percent",
    "gpu_utilization_percent",
    "gpu_sm_clock_ratio",
)
# Version 1 → 2: one name per concept, and ratios (0–1) as in Prometheus instead of percents.
# Old key → (new key, factor applied to its value).
V2_STAGES = {"queue": "preprocess_wait"}
V2_MEANS = {
    "cpu_percent": ("cpu_utilization_ratio", 0.01),
    "process_cpu_percent": ("process_cpu_cores", 0.01),
    "swap_used_percent": ("swap_used_ratio", 0.01),
    "gpu_utilization_percent": ("gpu_utilization_ratio", 0.01),
}
V2_SYSTEM = {
    "cpu_percent": ("cpu_utilization_ratio", 0.01),
    "cpu_percent_per_core": ("cpu_core_utilization_ratio", 0.01),
    "memory_used_percent": ("memory_used_ratio", 0.01),
    "swap_used_percent": ("swap_used_ratio", 0.01),
    "process_cpu_percent": ("process_cpu_cores", 0.01),
}
V2_GPU_DEVICE = {
    "utilization_gpu_percent": ("utilization_ratio", 0.01),
    "utilization_memory_percent": ("memory_utilization_ratio", 0.01),
}


def migrate_v1(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1 document as version 2, by renaming (the values are the same measurements):

    - the stage ``queue`` is ``preprocess_wait`` (in ``stages`` and every window's ``stages``);
    - percents are ratios (÷ 100) and the process CPU is in cores, under the names of
      :data:`V2_MEANS` (``system_means``), :data:`V2_SYSTEM` (``system``) and
      :data:`V2_GPU_DEVICE` (each of ``gpu.devices``).
    """
    doc = {**raw, "schema_version": 2}
    if isinstance(doc.get("stages"), list):
        doc["stages"] = [V2_STAGES.get(s, s) if isinstance(s, str) else s for s in doc["stages"]]
    if isinstance(doc.get("models"), Mapping):
        doc["models"] = {name: _stages_v2(entry) for name, entry in doc["models"].items()}
    if isinstance(doc.get("system_means"), Mapping):
        doc["system_means"] = {label: _renamed(m, V2_MEANS) for label, m in doc["system_means"].items()}
    if "system" in doc:
        doc["system"] = _renamed(doc["system"], V2_SYSTEM)
    gpu = doc.get("gpu")
    if isinstance(gpu, Mapping) and isinstance(gpu.get("devices"), list):
        doc["gpu"] = {**gpu, "devices": [_renamed(d, V2_GPU_DEVICE) for d in gpu["devices"]]}
    return doc


def _stages_v2(entry: Any) -> Any:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("windows"), Mapping):
        return entry
    windows = {
        label: {**w, "stages": {V2_STAGES.get(k, k): v for k, v in w["stages"].items()}}
        if isinstance(w, Mapping) and isinstance(w.get("stages"), Mapping)
        else w
        for label, w in entry["windows"].items()
    }
    return {**entry, "windows": windows}


def _renamed(values: Any, names: Mapping[str, tuple[str, float]]) -> Any:
    """``values`` with each old key under its new name, its number (or list of numbers) scaled."""
    if not isinstance(values, Mapping):
        return values
    out = {}
    for key, value in values.items():
        new, factor = names.get(key, (key, 1.0))
        out[new] = _scaled(value, factor)
    return out


def _scaled(value: Any, factor: float) -> Any:
    if factor == 1.0 or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(value * factor, 6)
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]
    return value


def json_schema() -> dict[str, Any]:
    """The document's JSON Schema (pinned by a test; readers in other languages can check against it)."""
    return StatsDocument.model_json_schema()


if __name__ == "__main__":  # python -m servoscope.telemetry.document > docs/stats-document.schema.json
    import json

    print(json.dumps(json_schema(), indent=1))


# Each version's migration to the next: read() applies them in turn up to SCHEMA_VERSION.
MIGRATIONS: dict[int, Callable[[Mapping[str, Any]], dict[str, Any]]] = {1: migrate_v1, 2: migrate_v2, 3: migrate_v3}
