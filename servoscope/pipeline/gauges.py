"""The pipeline's queues and workers at one moment: what the pipeline reports and telemetry reads.

Kept apart from :mod:`servoscope.pipeline.service` so that telemetry can read them without
importing the request path (and ONNX Runtime with it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelGauges:
    pending: int  # admitted and not yet answered
    pending_limit: int
    concurrency_limit: int  # the adaptive limit now (max_pending when static)
    batch_queue: int  # waiting in the batcher
    batch_queue_limit: int
    batches_in_flight: int
    instances: int


@dataclass(frozen=True, slots=True)
class Gauges:
    """The pipeline's queues and workers right now."""

    preprocess_queue: int  # waiting for a preprocess worker
    preprocess_busy: int
    preprocess_workers: int
    models: dict[str, ModelGauges]
