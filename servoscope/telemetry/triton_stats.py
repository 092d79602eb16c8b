"""Triton's statistics extension, accumulated from the same timing and batch records as every other
number the service reports (the telemetry sink hands each record here too; nothing is measured twice).

How servoscope's stages map onto Triton's fields (one image is one Triton inference: a request of
N images is N records, as N requests of batch 1 are in Triton):

    success          answered 2xx: count, and ns of the record's ``total``
    fail             any other status (bad input, refusals, deadlines): count, ns of ``total``
    queue            preprocess_wait + batch_wait  (waiting for a decode worker, then in the batcher)
    compute_input    preprocess           (decode, resize, normalize)
    compute_infer    inference
    compute_output   postprocess          (softmax, top-k, labels)

``queue`` and ``compute_*`` add up successes only, as Triton's do for executed requests; ``ingest``
and ``respond`` are in ``success`` alone. ``inference_count`` counts images answered,
``execution_count`` batches run, ``last_inference`` is the wall-clock millisecond of the last one.
``batch_stats`` per batch size: ``compute_infer`` and ``compute_output`` of each batch, and
``compute_input`` with its count of batches and 0 ns — decoding is done per image before batching,
so it is in ``inference_stats.compute_input`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servoscope.stages import TOTAL, BatchRecord, Stage, Timing

NS_PER_S = 1_000_000_000


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += max(0, round(seconds * NS_PER_S))

    def json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


INFERENCE_FIELDS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)
STAGE_FIELDS: dict[str, tuple[Stage, ...]] = {
    "queue": (Stage.PREPROCESS_WAIT, Stage.BATCH_WAIT),
    "compute_input": (Stage.PREPROCESS,),
    "compute_infer": (Stage.INFERENCE,),
    "compute_output": (Stage.POSTPROCESS,),
}


@dataclass
class ModelStats:
    inference: dict[str, Duration] = field(default_factory=lambda: {name: Duration() for name in INFERENCE_FIELDS})
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, BatchStats] = field(default_factory=dict)


class TritonStats:
    """Per-model accumulators; fed on the event loop by the telemetry sink."""

    def __init__(self, wall_s: Callable[[], float] = time.time) -> None:
        self.models: dict[str, ModelStats] = {}
        self.wall_s = wall_s

    def _model(self, name: str) -> ModelStats:
        found = self.models.get(name)
        if found is None:
            found = self.models[name] = ModelStats()
        return found

    def record(self, timing: Timing) -> None:
        if not timing.model:
            return
        stats = self._model(timing.model)
        durations = timing.durations()
        if not 200 <= timing.status < 300:
            stats.inference["fail"].add(durations[TOTAL])
            return
        stats.inference["success"].add(durations[TOTAL])
        for name, stages in STAGE_FIELDS.items():
            stats.inference[name].add(sum(durations.get(stage.value, 0.0) for stage in stages))
        stats.inference_count += 1
        stats.last_inference_ms = int(self.wall_s() * 1000)

    def record_batch(self, record: BatchRecord) -> None:
        stats = self._model(record.model)
        stats.execution_count += 1
        batch = stats.batches.setdefault(record.size, BatchStats())
        batch.compute_input.add(0.0)
        batch.compute_infer.add(record.inferred - record.started)
        batch.compute_output.add(record.finished - record.inferred)


def model_statistics(name: str, version: str, stats: ModelStats | None) -> dict[str, Any]:
    """One entry of ``model_stats`` in Triton's JSON shape (also the gRPC message's field names)."""
    stats = stats or ModelStats()
    return {
        "name": name,
        "version": version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {key: duration.json() for key, duration in stats.inference.items()},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": batch.compute_input.json(),
                "compute_infer": batch.compute_infer.json(),
                "compute_output": batch.compute_output.json(),
            }
            for size, batch in sorted(stats.batches.items())
        ],
        "memory_usage": [],
    }
