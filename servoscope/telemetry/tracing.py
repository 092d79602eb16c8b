"""OpenTelemetry tracing: a span per request, a child span per stage, a span per batch linked to
the requests it carried. Off by default, and then nothing is created at all.

On when the standard OpenTelemetry variables say so: ``OTEL_TRACES_EXPORTER`` (``otlp`` or
``console``), or an ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` wins. The exporter reads its own ``OTEL_EXPORTER_OTLP_*`` settings.
Spans are made from the timing record's timestamps, so they agree exactly with the metrics.
A client's W3C ``traceparent`` makes the request span a child of the client's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from servoscope import __version__
from servoscope.stages import BatchRecord, Timing

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()


def wanted(env: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for (``otlp`` or ``console``), or None: tracing off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return None if exporter == "none" else exporter.split(",")[0].strip()
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def provider_from_env(env: Mapping[str, str]) -> TracerProvider | None:
    exporter_name = wanted(env)
    if exporter_name is None:
        return None
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: SpanProcessor = BatchSpanProcessor(OTLPSpanExporter())
    elif exporter_name == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter())
    else:
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console): tracing stays off", exporter_name)
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "servoscope", "service.version": __version__}))
    provider.add_span_processor(processor)  # bounded queue; drops spans rather than block requests
    log.info("tracing on: exporting spans with %s", exporter_name)
    return provider


class Tracer:
    """Spans from timing records. ``provider=None``: every method returns at once."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("servoscope", __version__) if provider else None
        # monotonic seconds → epoch nanoseconds, fixed once
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def _ns(self, monotonic_s: float) -> int:
        return self._offset_ns + int(monotonic_s * 1e9)

    def begin(self, timing: Timing, name: str, headers: Mapping[str, str]) -> None:
        if self._tracer is None:
            return
        parent = _PROPAGATOR.extract(headers)
        timing.trace = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, start_time=self._ns(timing.start)
        )

    def trace_id(self, timing: Timing) -> str | None:
        span = timing.trace
        return format(span.get_span_context().trace_id, "032x") if span is not None else None

    def end(self, timing: Timing) -> None:
        span = timing.trace
        if span is None or self._tracer is None:
            return
        context = trace.set_span_in_context(span)
        for stage, start, end in timing.intervals():
            child = self._tracer.start_span(stage.value, context=context, start_time=self._ns(start))
            child.end(end_time=self._ns(end))
        span.set_attribute("servoscope.model", timing.model)
        span.set_attribute("http.response.status_code", timing.status)
        if timing.batch_size:
            span.set_attribute("servoscope.batch_size", timing.batch_size)
        if timing.error:
            span.set_attribute("error.type", timing.error)
        if timing.status >= 500:
            span.set_status(Status(StatusCode.ERROR, timing.error))
        span.end(end_time=self._ns(timing.last))

    def batch(self, record: BatchRecord) -> None:
        if self._tracer is None:
            return
        links = [Link(t.trace.get_span_context()) for t in record.members if t.trace is not None]
        span = self._tracer.start_span(
            "inference_batch",
            links=links,
            start_time=self._ns(record.started),
            attributes={
                "servoscope.model": record.model,
                "servoscope.instance": record.instance,
                "servoscope.batch_size": record.size,
            },
        )
        span.end(end_time=self._ns(record.finished))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
