"""/metrics, /v1/stats and tracing on a real server: all derived from the same timing records."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import ClassVar

import httpx
import pytest

from servoscope.stages import STAGE_NAMES, parse_server_timing
from support import CLASSIFY, MODEL, Photo, ServerProcess, assert_error, metric_value, wait_for

N_REQUESTS = 12


@pytest.fixture
def observed(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> tuple[ServerProcess, list[dict]]:
    srv = spawn_server("--models", MODEL)
    timings = []
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for i in range(N_REQUESTS):
            photo = photos[("coffee", "rocket", "camera")[i % 3]]
            response = client.post(CLASSIFY, content=photo.jpeg, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200
            timings.append(parse_server_timing(response.headers["server-timing"]))
        assert client.post(CLASSIFY, content=b"", headers={"Content-Type": "image/jpeg"}).status_code == 400
    return srv, timings


def test_metrics_and_stats_count_the_same_requests(observed: tuple[ServerProcess, list[dict]]) -> None:
    srv, timings = observed
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        # the last record lands just after its response is sent: wait until it is counted
        def all_recorded() -> bool:
            text = client.get("/metrics").text
            return (
                metric_value(text, "servoscope_requests_total", model=MODEL, code="200") == N_REQUESTS
                and metric_value(text, "servoscope_requests_total", model=MODEL, code="400") == 1
            )

        wait_for(all_recorded)
        metrics = client.get("/metrics")
        stats = client.get("/v1/stats").json()
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    window = stats["models"][MODEL]["windows"]["5m"]
    for stage in STAGE_NAMES:
        assert metric_value(text, "servoscope_stage_duration_seconds_count", model=MODEL, stage=stage) == N_REQUESTS
        assert window["stages"][stage]["count"] == N_REQUESTS
    assert metric_value(text, "servoscope_requests_total", model=MODEL, code="400") == 1
    assert window["throughput"]["by_code"] == {"200": N_REQUESTS, "400": 1}
    assert sum(int(size) * n for size, n in window["batches"]["size_counts"].items()) == N_REQUESTS
    # the slowest request's total in the header, and in the sketch (±1% accuracy; respond also covers the write)
    slowest = max(t["total"] for t in timings)
    assert window["stages"]["total"]["max"] >= slowest * 0.98
    assert window["input_bytes"]["count"] == N_REQUESTS + 0  # the empty body has no input size
    for name in ("servoscope_queue_depth", "servoscope_model_busy_ratio", "servoscope_requests_pending"):
        assert name in text
    assert metric_value(text, "servoscope_requests_open") == 0  # all answered
    busy = metric_value(text, "servoscope_model_busy_ratio", model=MODEL, model_instance="0")
    assert busy is not None and 0.0 < busy <= 1.0


def test_stats_document_shape(observed: tuple[ServerProcess, list[dict]]) -> None:
    srv, _ = observed
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        wait_for(lambda: client.get("/v1/stats").json()["system_means"]["1m"]["cpu_utilization_ratio"] is not None)
        stats = client.get("/v1/stats").json()
    assert stats["stages"] == list(STAGE_NAMES)
    means = stats["system_means"]["1m"]  # window means of the 1 s machine samples
    assert 0 <= means["cpu_utilization_ratio"] <= 1 and means["memory_available_bytes"] > 0
    assert stats["windows_ago_s"]["before"] == 60
    # the "before" window ends a minute back: a server younger than that has no requests in it
    assert stats["models"][MODEL]["windows"]["before"]["stages"]["total"] is None
    assert set(stats["windows_s"]) == {"1m", "5m", "before"}
    model = stats["models"][MODEL]
    assert set(model["queues"]) == {"pending", "batch_queue", "batches_in_flight", "concurrency_limit"}
    p = model["windows"]["1m"]["stages"]["inference"]
    assert 0 < p["p50"] <= p["p90"] <= p["p95"] <= p["p99"] <= p["max"] * 1.02
    assert stats["preprocess"]["workers"] >= 1
    assert stats["system"]["memory_total_bytes"] > 0
    assert stats["gpu"]["available"] is False and stats["gpu"]["reason"]


def test_telemetry_off(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    srv = spawn_server("--models", MODEL, env={"SERVOSCOPE_TELEMETRY": "false"})
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        assert_error(client.get("/metrics"), 503, "telemetry")
        assert_error(client.get("/v1/stats"), 503, "telemetry")
        response = client.post(CLASSIFY, content=photos["coffee"].jpeg, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200 and "server-timing" in response.headers


def test_traces_exported_with_the_clients_trace_id(
    spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    srv = spawn_server("--models", MODEL, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"})
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        response = client.post(
            CLASSIFY,
            content=photos["coffee"].jpeg,
            headers={"Content-Type": "image/jpeg", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 200
        names = ("inference_batch", "classify", *STAGE_NAMES[:-1])
        # spans are exported in the background, the request's own once its answer was sent
        wait_for(lambda: all(f'"name": "{name}"' in srv.log.read_text(errors="replace") for name in names))
    assert f"0x{trace_id}" in srv.log.read_text(errors="replace")


class _OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP trace receiver: keeps every ExportTraceServiceRequest it is sent."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/v1/traces":
            type(self).received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_traces_exported_over_otlp(spawn_server: Callable[..., ServerProcess], photos: dict[str, Photo]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _OtlpReceiver.received = []
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
        srv = spawn_server(
            "--models", MODEL, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        )
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            response = client.post(
                CLASSIFY,
                content=photos["rocket"].jpeg,
                headers={"Content-Type": "image/jpeg", "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            )
            assert response.status_code == 200

        def spans() -> dict[str, list]:
            found: dict[str, list] = {}
            for body in list(_OtlpReceiver.received):
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            found.setdefault(span.name, []).append(span)
            return found

        wait_for(lambda: {"classify", "inference_batch", *STAGE_NAMES[:-1]} <= set(spans()))
        root = spans()["classify"][0]
        assert root.trace_id.hex() == trace_id
        assert all(child.parent_span_id == root.span_id for child in spans()["inference"])
        assert spans()["inference_batch"][0].links[0].span_id == root.span_id
    finally:
        receiver.shutdown()
        receiver.server_close()
