"""The Prometheus metrics, in one registry per service (a fresh one per test).

Names follow Prometheus conventions: base units in the name (``_seconds``, ``_bytes``),
``_total`` on counters, low-cardinality labels only (model, stage, code, reason, instance).
Every per-model family carries ``variant`` as well: during a rollout the served model's part in it
(``baseline`` or ``canary``, :meth:`servoscope.rollout.variants.Rollouts.variant_of`), else empty —
in Prometheus an empty label is no label, so a series outside a rollout reads as before.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from servoscope.stages import STAGE_NAMES

# 0.5 ms … 10 s, about 1.5× apart: fine enough to tell 200 ms from 300 ms at P95.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.6,
    0.8,
    1.0,
    1.25,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
BYTES_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(10, 27))  # 1 KiB … 64 MiB
PIXELS_BUCKETS: tuple[float, ...] = (
    1e4,
    5e4,
    1e5,
    2e5,
    3e5,
    5e5,
    1e6,
    2e6,
    3e6,
    5e6,
    8e6,
    1.2e7,
    1.6e7,
    2.5e7,
    5e7,
    1e8,
)
LOOP_LAG_BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def no_variant(model: str) -> str:
    return ""


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.variant_of: Callable[[str], str] = no_variant  # a served model's variant (the server sets it)
        r = registry
        self.stage_duration = Histogram(
            "servoscope_stage_duration_seconds",
            "Time requests spent in each pipeline stage (served requests).",
            ["model", "stage", "variant"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.requests = Counter(
            "servoscope_requests", "Requests answered, by HTTP status.", ["model", "code", "variant"], registry=r
        )
        self.protocol_requests = Counter(
            "servoscope_protocol_requests",
            "Requests answered, by protocol (http, grpc) and HTTP-equivalent status.",
            ["model", "protocol", "code", "variant"],
            registry=r,
        )
        self.arrived = Counter(
            "servoscope_requests_arrived",
            "Inference requests that arrived for each model, counted on arrival "
            "(the demand: answered, refused or still in progress).",
            ["model", "variant"],
            registry=r,
        )
        self.request_duration = Histogram(
            "servoscope_request_duration_seconds",
            "Time from arrival to the last byte of the answer.",
            ["model", "code", "variant"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.refused = Counter(
            "servoscope_refused",
            "Requests refused or dropped by the service itself (429/503/504), by reason.",
            ["model", "reason", "variant"],
            registry=r,
        )
        self.early_retries = Counter(
            "servoscope_early_retries",
            "Refusals of a request sent again on its connection before its Retry-After "
            "had passed: answered at the end of that wait (one second at most), not at once.",
            ["model", "variant"],
            registry=r,
        )
        self.batch_size = Histogram(
            "servoscope_batch_size",
            "Requests per inference batch.",
            ["model", "variant"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.busy = Counter(
            "servoscope_model_busy_seconds",
            "Seconds each model instance spent running batches.",
            ["model", "model_instance", "variant"],
            registry=r,
        )
        self.input_bytes = Histogram(
            "servoscope_input_bytes",
            "Size of uploaded images.",
            ["model", "variant"],
            buckets=BYTES_BUCKETS,
            registry=r,
        )
        self.input_pixels = Histogram(
            "servoscope_input_pixels",
            "Width × height of uploaded images.",
            ["model", "variant"],
            buckets=PIXELS_BUCKETS,
            registry=r,
        )
        self.metadata_ignored = Counter(
            "servoscope_image_metadata_ignored",
            "Images served without their EXIF (it did not parse, or was larger than a JPEG's can be), by reason.",
            ["model", "reason", "variant"],
            registry=r,
        )
        self.delivery = Histogram(
            "servoscope_response_delivery_seconds",
            "After the answer was handed to the connection: time until the client acknowledged all of it "
            "(slow readers, slow networks).",
            ["model", "variant"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.instance_restarts = Counter(
            "servoscope_instance_restarts",
            "Model instance processes lost (died or hung) and replaced.",
            ["model", "variant"],
            registry=r,
        )
        self.decode_fallbacks = Counter(
            "servoscope_decode_fallbacks",
            "Images of a model with GPU decode that took the CPU path, by reason.",
            ["model", "reason", "variant"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "servoscope_event_loop_lag_seconds",
            "How late the event loop ran a timer: time it was busy elsewhere.",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=r,
        )
        self._stage_children = {}

    def observe_stage(self, model: str, stage: str, seconds: float, variant: str = "") -> None:
        key = (model, stage, variant)
        child = self._stage_children.get(key)
        if child is None:
            if stage not in STAGE_NAMES:
                raise ValueError(f"unknown stage {stage!r}")
            child = self._stage_children[key] = self.stage_duration.labels(model, stage, variant)
        child.observe(seconds)
