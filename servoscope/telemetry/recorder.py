"""The telemetry sink: every finished timing record and batch record becomes Prometheus metrics,
rolling-window percentiles and (when on) trace spans — all from the same numbers.

Telemetry never breaks a request: a failure here is logged (once per kind) and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ddsketch import DDSketch
from prometheus_client import CollectorRegistry

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.stages import TOTAL, BatchRecord, Timing
from servoscope.telemetry.metrics import Metrics
from servoscope.telemetry.tracing import Tracer
from servoscope.telemetry.triton_stats import TritonStats
from servoscope.telemetry.windows import RELATIVE_ACCURACY, Rolling

if TYPE_CHECKING:  # the pipeline (and ONNX Runtime) need not load with telemetry
    from servoscope.pipeline.batcher import InstanceRestart

log = logging.getLogger(__name__)

HORIZON_S = 300.0
SKETCH_BUCKET_S = 5.0  # percentile windows: 5 s slices
COUNT_BUCKET_S = 1.0  # rates and busy ratios: 1 s slices
REFUSALS = frozenset({429, 503, 504})
DELIVERY = "delivery"  # not a stage: it follows ``respond``, outside ``total`` (see server/delivery.py)


class Telemetry:
    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        registry: CollectorRegistry | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = Metrics(registry or CollectorRegistry())
        self.tracer = tracer or Tracer(None)
        self.sketches = Rolling(clock, SKETCH_BUCKET_S, HORIZON_S)
        self.counts = Rolling(clock, COUNT_BUCKET_S, HORIZON_S)
        self._failed: set[str] = set()
        self.answered = 0  # requests recorded since start
        self.lifetime: dict[str, DDSketch] = {}  # per model: ``total`` of every answered request since start
        self.triton = TritonStats()  # Triton's statistics extension, from the same records

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def _guarded_failure(self, where: str) -> None:
        if where not in self._failed:
            self._failed.add(where)
            log.exception("telemetry failed in %s (logged once; requests are unaffected)", where)

    def begin(self, timing: Timing, name: str, headers: Mapping[str, str]) -> None:
        """A request arrived: open its trace span (when tracing is on)."""
        try:
            self.tracer.begin(timing, name, headers)
        except Exception:
            self._guarded_failure("begin")

    def arrived(self, model: str) -> None:
        """An inference request for ``model`` arrived (counted before it is admitted or refused)."""
        try:
            self.metrics.arrived.labels(model, self.metrics.variant_of(model)).inc()
            self.counts.event(("arrived", model))
        except Exception:
            self._guarded_failure("arrived")

    def early_retry(self, model: str) -> None:
        """The door holds a refusal: the same request came back before its Retry-After had passed."""
        try:
            self.metrics.early_retries.labels(model, self.metrics.variant_of(model)).inc()
        except Exception:
            self._guarded_failure("early_retry")

    def record(self, timing: Timing) -> None:
        """A request was answered (the RecordSink)."""
        try:
            self._record(timing)
        except Exception:
            self._guarded_failure("record")

    def _record(self, timing: Timing) -> None:
        m = self.metrics
        self.answered += 1
        model, status = timing.model, timing.status
        variant = m.variant_of(model)
        code = str(status)
        durations = timing.durations()
        total = durations[TOTAL]
        trace_id = self.tracer.trace_id(timing)
        exemplar = {"trace_id": trace_id} if trace_id else None
        m.requests.labels(model, code, variant).inc()
        m.protocol_requests.labels(model, timing.protocol, code, variant).inc()
        self.triton.record(timing)
        m.request_duration.labels(model, code, variant).observe(total, exemplar)
        self.counts.count(("code", model, code))
        if 200 <= status < 300:
            for stage, seconds in durations.items():
                m.observe_stage(model, stage, seconds, variant)
                self.sketches.observe((model, stage), seconds)
            self.lifetime.setdefault(model, DDSketch(RELATIVE_ACCURACY)).add(total)
            if timing.delivery_s is not None:
                m.delivery.labels(model, variant).observe(timing.delivery_s)
                self.sketches.observe((model, DELIVERY), timing.delivery_s)
        elif status in REFUSALS:
            reason = timing.error or "unknown"
            m.refused.labels(model, reason, variant).inc()
            self.counts.count(("refused", model, reason))
        if timing.input_bytes:
            m.input_bytes.labels(model, variant).observe(timing.input_bytes)
            self.sketches.observe((model, "input_bytes"), timing.input_bytes)
        if timing.input_pixels:
            m.input_pixels.labels(model, variant).observe(timing.input_pixels)
            self.sketches.observe((model, "input_pixels"), timing.input_pixels)
        if timing.ignored_metadata:
            m.metadata_ignored.labels(model, timing.ignored_metadata, variant).inc()
            log.debug("served an image without its EXIF (%s)", timing.ignored_metadata)
        self.tracer.end(timing)

    def record_batch(self, record: BatchRecord) -> None:
        """A batch ran (the BatchSink)."""
        try:
            m = self.metrics
            variant = m.variant_of(record.model)
            m.batch_size.labels(record.model, variant).observe(record.size)
            m.busy.labels(record.model, str(record.instance), variant).inc(record.busy_s)
            self.counts.count(("busy", record.model, record.instance), record.busy_s)
            self.counts.count(("batch_size", record.model, record.size))
            self.triton.record_batch(record)
            self.tracer.batch(record)
        except Exception:
            self._guarded_failure("record_batch")

    def record_restart(self, event: InstanceRestart) -> None:
        """An instance's process was replaced (the RestartSink)."""
        try:
            self.metrics.instance_restarts.labels(event.model, self.metrics.variant_of(event.model)).inc()
        except Exception:
            self._guarded_failure("record_restart")

    def record_decode_fallback(self, model: str, reason: str) -> None:
        """An image of a model with GPU decode took the CPU path (the FallbackSink)."""
        try:
            self.metrics.decode_fallbacks.labels(model, reason, self.metrics.variant_of(model)).inc()
        except Exception:
            self._guarded_failure("record_decode_fallback")

    def record_loop_lag(self, seconds: float) -> None:
        self.metrics.loop_lag.observe(seconds)
        self.sketches.observe(("event_loop", "lag"), seconds)

    def busy_ratio(self, model: str, instance: int, window_s: float, ago_s: float = 0.0) -> float:
        busy = self.counts.total(("busy", model, instance), window_s, ago_s)
        return min(1.0, busy / self.counts.covered_s(window_s, ago_s))

    def record_system(self, values: Mapping[str, float | None]) -> None:
        """One sample of the machine (CPU, memory …): window means come from their sums."""
        for name, value in values.items():
            if value is not None:
                self.counts.count(("system", name), value)
                self.counts.count(("system_n", name))

    def system_means(self, window_s: float, ago_s: float = 0.0) -> dict[str, float]:
        out = {}
        for key in self.counts.keys(window_s, ago_s):
            if key[0] == "system_n":
                out[key[1]] = self.counts.total(("system", key[1]), window_s, ago_s) / self.counts.total(
                    key, window_s, ago_s
                )
        return out

    def shutdown(self) -> None:
        self.tracer.shutdown()
