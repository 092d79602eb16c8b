"""The telemetry sink: metrics, windows and trace spans all derived from the same timing records."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from servoscope.clock import ManualClock
from servoscope.stages import STAGES, BatchRecord, Stage, Timing
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.tracing import Tracer, provider_from_env, wanted

MODEL = "m"


def served(start: float, step: float = 0.01, model: str = MODEL, status: int = 200) -> Timing:
    """A record that passed every stage, each taking ``step`` seconds."""
    timing = Timing(start, model=model, status=status, input_bytes=5000, input_pixels=76800, batch_size=2)
    for i, stage in enumerate(STAGES, start=1):
        timing.end(stage, start + i * step)
    return timing


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """A series' value; a per-model family's ``variant`` is empty outside a rollout, as here unless named."""
    found = registry.get_sample_value(name, labels)
    return (
        found
        if found is not None or "model" not in labels
        else registry.get_sample_value(name, {"variant": "", **labels})
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(100.0)


@pytest.fixture
def telemetry(clock: ManualClock) -> Telemetry:
    return Telemetry(clock, CollectorRegistry())


def test_served_request_feeds_every_stage_histogram_and_window(telemetry: Telemetry, clock: ManualClock) -> None:
    telemetry.record(served(clock.now()))
    r = telemetry.registry
    assert sample(r, "servoscope_requests_total", model=MODEL, code="200") == 1
    for stage in [*(s.value for s in STAGES), "total"]:
        assert sample(r, "servoscope_stage_duration_seconds_count", model=MODEL, stage=stage) == 1
    assert sample(r, "servoscope_stage_duration_seconds_sum", model=MODEL, stage="preprocess") == pytest.approx(0.01)
    assert sample(r, "servoscope_stage_duration_seconds_sum", model=MODEL, stage="total") == pytest.approx(0.07)
    assert sample(r, "servoscope_input_bytes_sum", model=MODEL) == 5000
    window = telemetry.sketches.merged((MODEL, "total"), 60)
    assert window is not None and window.count == 1
    assert window.get_quantile_value(0.95) == pytest.approx(0.07, rel=0.02)


def test_refusals_are_counted_by_reason_not_as_stage_latency(telemetry: Telemetry, clock: ManualClock) -> None:
    refused = Timing(clock.now(), model=MODEL, status=429, error="batch_queue_full")
    refused.end(Stage.INGEST, clock.now() + 0.001)
    telemetry.record(refused)
    bad = Timing(clock.now(), model=MODEL, status=400, error="invalid_image")
    telemetry.record(bad)
    r = telemetry.registry
    assert sample(r, "servoscope_refused_total", model=MODEL, reason="batch_queue_full") == 1
    assert sample(r, "servoscope_refused_total", model=MODEL, reason="invalid_image") is None
    assert sample(r, "servoscope_requests_total", model=MODEL, code="429") == 1
    assert sample(r, "servoscope_requests_total", model=MODEL, code="400") == 1
    assert sample(r, "servoscope_stage_duration_seconds_count", model=MODEL, stage="ingest") is None
    assert telemetry.counts.total(("refused", MODEL, "batch_queue_full"), 60) == 1


def test_batches_give_sizes_and_busy_ratio(telemetry: Telemetry, clock: ManualClock) -> None:
    clock.advance(10)  # ten seconds of history
    start = clock.now()
    members = (served(start), served(start), served(start))
    telemetry.record_batch(BatchRecord(MODEL, 0, start, start + 2.0, start + 2.5, members))
    r = telemetry.registry
    assert sample(r, "servoscope_batch_size_sum", model=MODEL) == 3
    assert sample(r, "servoscope_model_busy_seconds_total", model=MODEL, model_instance="0") == pytest.approx(2.5)
    assert telemetry.busy_ratio(MODEL, 0, 10) == pytest.approx(0.25)
    assert telemetry.busy_ratio(MODEL, 1, 10) == 0.0


def test_every_per_model_family_carries_the_variant(telemetry: Telemetry, clock: ManualClock) -> None:
    telemetry.metrics.variant_of = {f"{MODEL}@canary": "canary", MODEL: "baseline"}.get  # as a rollout's Rollouts does
    start = clock.now()
    telemetry.arrived(f"{MODEL}@canary")
    telemetry.record(served(start, model=f"{MODEL}@canary"))
    telemetry.record(Timing(start, model=f"{MODEL}@canary", status=429, error="batch_queue_full"))
    telemetry.record_batch(BatchRecord(MODEL, 0, start, start + 1.0, start + 1.5, (served(start),)))
    r = telemetry.registry
    per_model = [m for m in r.collect() if any("model" in s.labels for s in m.samples)]
    assert per_model and all("variant" in s.labels for m in per_model for s in m.samples if "model" in s.labels)
    assert sample(r, "servoscope_requests_total", model=f"{MODEL}@canary", code="200", variant="canary") == 1
    assert sample(r, "servoscope_refused_total", model=f"{MODEL}@canary", reason="batch_queue_full", variant="canary")
    assert sample(r, "servoscope_requests_arrived_total", model=f"{MODEL}@canary", variant="canary") == 1
    assert sample(r, "servoscope_batch_size_sum", model=MODEL, variant="baseline") == 1
    assert sample(r, "servoscope_stage_duration_seconds_count", model=MODEL, stage="total", variant="canary") is None


def test_a_failing_sink_never_breaks_the_caller(telemetry: Telemetry, clock: ManualClock) -> None:
    weird = served(clock.now())
    weird.model = None  # type: ignore[assignment]  # a label prometheus_client refuses
    telemetry.record(weird)  # logged, not raised
    telemetry.record(served(clock.now()))
    assert sample(telemetry.registry, "servoscope_requests_total", model=MODEL, code="200") == 1


# --- tracing -------------------------------------------------------------------------------


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(clock: ManualClock, spans: InMemorySpanExporter) -> Telemetry:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return Telemetry(clock, CollectorRegistry(), Tracer(provider))


def test_tracing_is_off_unless_the_environment_asks() -> None:
    assert wanted({}) is None
    assert provider_from_env({}) is None
    assert wanted({"OTEL_TRACES_EXPORTER": "otlp"}) == "otlp"
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is None
    assert wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}) is None


def test_off_tracer_creates_nothing(telemetry: Telemetry, clock: ManualClock) -> None:
    timing = served(clock.now())
    telemetry.begin(timing, "classify", {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert timing.trace is None


def test_request_span_with_a_child_per_stage_and_the_clients_parent(
    traced: Telemetry, clock: ManualClock, spans: InMemorySpanExporter
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    timing = Timing(clock.now(), model=MODEL)
    traced.begin(timing, "classify", {"traceparent": f"00-{trace_id}-{parent_id}-01"})
    for i, stage in enumerate(STAGES, start=1):
        timing.end(stage, timing.start + i * 0.01)
    timing.status = 200
    traced.record(timing)
    finished = {s.name: s for s in spans.get_finished_spans()}
    root = finished["classify"]
    assert format(root.context.trace_id, "032x") == trace_id
    assert format(root.parent.span_id, "016x") == parent_id
    for stage in STAGES:
        child = finished[stage.value]
        assert child.parent.span_id == root.context.span_id
        assert (child.end_time - child.start_time) == pytest.approx(0.01e9, abs=2)
    assert root.end_time - root.start_time == pytest.approx(0.07e9, abs=2)
    assert root.attributes["http.response.status_code"] == 200
    exemplar_sample = sample(traced.registry, "servoscope_request_duration_seconds_count", model=MODEL, code="200")
    assert exemplar_sample == 1


def test_batch_span_links_the_requests_it_carried(
    traced: Telemetry, clock: ManualClock, spans: InMemorySpanExporter
) -> None:
    members = []
    for _ in range(3):
        timing = served(clock.now())
        traced.begin(timing, "classify", {})
        members.append(timing)
    start = clock.now()
    traced.record_batch(BatchRecord(MODEL, 0, start, start + 0.05, start + 0.06, tuple(members)))
    batch = next(s for s in spans.get_finished_spans() if s.name == "inference_batch")
    linked = {link.context.span_id for link in batch.links}
    assert linked == {m.trace.get_span_context().span_id for m in members}
    assert batch.attributes["servoscope.batch_size"] == 3
