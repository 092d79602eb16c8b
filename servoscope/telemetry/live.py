"""Gauges read at scrape time: queue depths, requests pending, busy ratios, system and GPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from servoscope.pipeline.gauges import Gauges
from servoscope.telemetry.monitor import Readings
from servoscope.telemetry.recorder import Telemetry

BUSY_WINDOW_S = 10.0


class LiveCollector(Collector):
    def __init__(
        self,
        telemetry: Telemetry,
        gauges: Callable[[], Gauges],
        readings: Readings,
        open_requests: Callable[[], int],
        ingesting: Callable[[], int] = lambda: 0,
    ) -> None:
        self.telemetry = telemetry
        self.gauges = gauges
        self.readings = readings
        self.open_requests = open_requests
        self.ingesting = ingesting

    def collect(self) -> Iterator[Metric]:
        g = self.gauges()
        depth = GaugeMetricFamily(
            "servoscope_queue_depth", "Requests waiting in each queue.", labels=["queue", "model", "variant"]
        )
        depth.add_metric(["preprocess", "", ""], g.preprocess_queue)
        pending = GaugeMetricFamily(
            "servoscope_requests_pending", "Requests admitted and not yet answered.", labels=["model", "variant"]
        )
        batches = GaugeMetricFamily(
            "servoscope_batches_in_flight", "Batches running on model instances.", labels=["model", "variant"]
        )
        busy = GaugeMetricFamily(
            "servoscope_model_busy_ratio",
            f"Share of the last {BUSY_WINDOW_S:g} s each model instance spent running batches.",
            labels=["model", "model_instance", "variant"],
        )
        pending_limit = GaugeMetricFamily(
            "servoscope_requests_pending_limit",
            "Admission limit of pending requests (max_pending).",
            labels=["model", "variant"],
        )
        concurrency = GaugeMetricFamily(
            "servoscope_concurrency_limit",
            "Requests admitted at once now (adaptive admission; else max_pending).",
            labels=["model", "variant"],
        )
        capacity = GaugeMetricFamily(
            "servoscope_queue_capacity", "Most requests each queue holds.", labels=["queue", "model", "variant"]
        )
        for name, m in g.models.items():
            variant = self.telemetry.metrics.variant_of(name)
            depth.add_metric(["batch", name, variant], m.batch_queue)
            capacity.add_metric(["batch", name, variant], m.batch_queue_limit)
            pending.add_metric([name, variant], m.pending)
            pending_limit.add_metric([name, variant], m.pending_limit)
            concurrency.add_metric([name, variant], m.concurrency_limit)
            batches.add_metric([name, variant], m.batches_in_flight)
            for i in range(m.instances):
                busy.add_metric([name, str(i), variant], self.telemetry.busy_ratio(name, i, BUSY_WINDOW_S))
        workers = GaugeMetricFamily(
            "servoscope_preprocess_workers", "Preprocess worker threads, by state.", labels=["state"]
        )
        workers.add_metric(["busy"], g.preprocess_busy)
        workers.add_metric(["idle"], max(0, g.preprocess_workers - g.preprocess_busy))
        open_requests = GaugeMetricFamily(
            "servoscope_requests_open",
            "Inference requests arrived and not yet answered (ingesting, admitted, or being refused).",
            value=self.open_requests(),
        )
        ingesting = GaugeMetricFamily(
            "servoscope_requests_ingesting",
            "Inference requests whose bodies are still arriving (they hold no model's place; max_ingest bounds them).",
            value=self.ingesting(),
        )
        yield from (depth, capacity, pending, pending_limit, concurrency, batches, busy, workers)
        yield from (open_requests, ingesting)
        yield from self._system()
        yield from self._gpu()

    def _system(self) -> Iterator[Metric]:
        s = self.readings.system
        if s is None:
            return
        values = {
            "servoscope_system_cpu_utilization_ratio": (s.cpu_utilization_ratio, "Machine CPU busy share, all cores."),
            "servoscope_process_cpu_cores": (s.process_cpu_cores, "Cores the serving process kept busy."),
            "servoscope_system_memory_available_bytes": (s.memory_available_bytes, "Memory available to new work."),
            "servoscope_process_resident_memory_bytes": (s.process_rss_bytes, "Serving process RSS."),
            "servoscope_system_context_switches_per_second": (s.ctx_switches_per_s, "Machine context switches."),
        }
        for name, (value, doc) in values.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        if s.cpu_core_utilization_ratio:
            cores = GaugeMetricFamily(
                "servoscope_system_cpu_core_utilization_ratio", "CPU busy share per core.", labels=["cpu"]
            )
            for i, ratio in enumerate(s.cpu_core_utilization_ratio):
                cores.add_metric([str(i)], ratio)
            yield cores

    def _gpu(self) -> Iterator[Metric]:
        reading = self.readings.gpu
        available = GaugeMetricFamily("servoscope_gpu_available", "1 when NVML sees GPUs.")
        available.add_metric([], 1.0 if reading is not None and reading.available else 0.0)
        yield available
        if reading is None or not reading.available:
            return
        fields = {
            "servoscope_gpu_utilization_ratio": ("utilization_ratio", 1, "GPU busy share."),
            "servoscope_gpu_memory_used_bytes": ("memory_used_bytes", 1, "GPU memory used."),
            "servoscope_gpu_memory_total_bytes": ("memory_total_bytes", 1, "GPU memory."),
            "servoscope_gpu_sm_clock_hertz": ("sm_clock_mhz", 1e6, "SM clock."),
            "servoscope_gpu_sm_clock_max_hertz": ("sm_clock_max_mhz", 1e6, "Maximum SM clock."),
            "servoscope_gpu_temperature_celsius": ("temperature_c", 1, "GPU temperature."),
            "servoscope_gpu_power_watts": ("power_draw_w", 1, "GPU power draw."),
        }
        for name, (attr, scale, doc) in fields.items():
            family = GaugeMetricFamily(name, doc, labels=["gpu"])
            for d in reading.devices:
                value = getattr(d, attr)
                if value is not None:
                    family.add_metric([str(d.index)], value * scale)
            yield family
        reasons = GaugeMetricFamily(
            "servoscope_gpu_throttle_reason",
            "1 for each reason the GPU's clocks are held below their maximum now.",
            labels=["gpu", "reason"],
        )
        for d in reading.devices:
            for reason in d.throttle_reasons or ():
                reasons.add_metric([str(d.index), reason], 1.0)
        yield reasons
