"""Evidence from Prometheus: PromQL over a rate window ending at one instant, mapped into the
same ``Evidence`` the rules read from ``/v1/stats``.

Sums (traffic, refusals, stage histograms) are over every scraped servoscope process serving
the model; per-process readings (busy ratio, instances, CPU, memory, workers, event-loop lag)
are those of the busiest process. Prometheus cannot give the machine's total memory, swap, or
the largest batch (only bucket bounds): those fields are None and the rules cope.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from servoscope.doctor.evidence import Evidence, EvidenceError, Percentiles
from servoscope.stages import STAGE_NAMES, TOTAL
from servoscope.telemetry.gpu import SLOWING_REASONS

TIMEOUT_S = 10.0
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


class PromSource:
    """Instant queries against one Prometheus, over rate windows of ``range_``."""

    def __init__(self, url: str, range_: str = "5m", timeout_s: float = TIMEOUT_S) -> None:
        self.url, self.range = url, range_
        self.timeout_s = timeout_s

    def query(self, expr: str, at: str) -> list[dict[str, Any]]:
        params = {"query": expr} | ({} if at == "now" else {"time": at})
        try:
            with httpx.Client(base_url=self.url, timeout=self.timeout_s) as client:
                body = client.get("/api/v1/query", params=params).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OSError(f"cannot query Prometheus at {self.url}: {exc}") from exc
        if body.get("status") != "success":
            raise EvidenceError(f"Prometheus refused {expr!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def by(self, label: str, expr: str, at: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): _value(r) for r in self.query(expr, at)}

    def scalar(self, expr: str, at: str) -> float:
        return next(iter(self.by("", expr, at).values()), 0.0)

    def maybe(self, expr: str, at: str) -> float | None:
        """The value, or None where no series answers (a metric the targets do not export)."""
        return next(iter(self.by("", expr, at).values()), None)

    def busiest_model(self, at: str) -> str:
        totals = self.by(
            "model",
            f'sum by (model) (increase(servoscope_stage_duration_seconds_count{{stage="{TOTAL}"}}[{self.range}]))',
            at,
        )
        if not totals:
            raise EvidenceError(f"Prometheus at {self.url} has no servoscope stage histograms at {at}")
        return max(totals, key=lambda m: totals[m])

    def evidence(self, at: str, model: str | None = None) -> Evidence:
        name = model or self.busiest_model(at)
        m, r = f'model="{name}"', self.range
        counts = self.by("stage", f"sum by (stage) (increase(servoscope_stage_duration_seconds_count{{{m}}}[{r}]))", at)
        if counts.get(TOTAL, 0.0) <= 0:
            raise EvidenceError(f"no requests for model {name!r} in the {r} before {at}")
        q = {
            k: self.by("stage", _quantile(v, "servoscope_stage_duration_seconds", m, r, "stage"), at)
            for k, v in QUANTILES.items()
        }
        stages = {
            s: Percentiles(counts.get(s, 0.0), q["p50"].get(s, 0.0), q["p95"].get(s, 0.0), q["p99"].get(s, 0.0))
            for s in STAGE_NAMES
        }
        one = lambda expr: self.scalar(expr, at)  # noqa: E731
        delivery = Percentiles(
            one(f"sum(increase(servoscope_response_delivery_seconds_count{{{m}}}[{r}]))"),
            *(one(_quantile(v, "servoscope_response_delivery_seconds", m, r)) for v in QUANTILES.values()),
        )
        busiest = f"max(avg by (instance) (rate(servoscope_model_busy_seconds_total{{{m}}}[{r}])))"
        refused = self.by("reason", f"sum by (reason) (rate(servoscope_refused_total{{{m}}}[{r}]))", at)
        return Evidence(
            model=name,
            window=r,
            stages=stages,
            delivery=delivery,
            answered_per_s=one(f"sum(rate(servoscope_requests_total{{{m}}}[{r}]))"),
            refused_per_s=one(f"sum(rate(servoscope_refused_total{{{m}}}[{r}]))"),
            errors_per_s=one(f'sum(rate(servoscope_requests_total{{{m}, code!~"2.."}}[{r}]))'),
            refused_by_reason={k: v for k, v in refused.items() if v > 0},
            batch_mean_size=one(
                f"sum(rate(servoscope_batch_size_sum{{{m}}}[{r}])) / sum(rate(servoscope_batch_size_count{{{m}}}[{r}]))"
            ),
            batch_max_size=None,
            busy_ratio=one(busiest),
            instances=int(one(f"max(count by (instance) (servoscope_model_busy_seconds_total{{{m}}}))")) or 1,
            input_bytes_p95=one(_quantile(0.95, "servoscope_input_bytes", m, r)),
            input_pixels_p95=one(_quantile(0.95, "servoscope_input_pixels", m, r)),
            preprocess_workers=int(one("max(sum by (instance) (servoscope_preprocess_workers))")),
            event_loop_lag_p95_s=one(
                "max(histogram_quantile(0.95, sum by (le, instance) "
                f"(rate(servoscope_event_loop_lag_seconds_bucket[{r}]))))"
            ),
            cpu_count=int(one("max(count by (instance) (servoscope_system_cpu_core_utilization_ratio))")) or 1,
            machine_cpu_utilization_ratio=one(f"max(avg_over_time(servoscope_system_cpu_utilization_ratio[{r}]))"),
            process_cpu_cores=one(f"max(avg_over_time(servoscope_process_cpu_cores[{r}]))"),
            memory_available_bytes=one(f"min(avg_over_time(servoscope_system_memory_available_bytes[{r}]))"),
            memory_total_bytes=None,
            swap_used_ratio=None,
            arrived_per_s=one(f"sum(rate(servoscope_requests_arrived_total{{{m}}}[{r}]))"),
            **self._gpu(at),
        )

    def _gpu(self, at: str) -> dict[str, Any]:
        """The busiest GPU over the range, where the targets have one."""
        r = self.range
        util = self.maybe(f"max(avg_over_time(servoscope_gpu_utilization_ratio[{r}]))", at)
        if util is None:
            return {}
        clock = self.maybe(
            f"min(avg_over_time(servoscope_gpu_sm_clock_hertz[{r}]) / "
            f"avg_over_time(servoscope_gpu_sm_clock_max_hertz[{r}]))",
            at,
        )
        reasons = self.by("reason", f"max by (reason) (max_over_time(servoscope_gpu_throttle_reason[{r}]))", at)
        return {
            "gpu_utilization_ratio": util,
            "gpu_clock_ratio": clock,
            "gpu_throttle_reasons": tuple(sorted(k for k, v in reasons.items() if v > 0 and k in SLOWING_REASONS)),
        }


def _quantile(q: float, metric: str, match: str, range_: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{{{match}}}[{range_}])))"


def _value(result: dict[str, Any]) -> float:
    value = float(result["value"][1])
    return value if math.isfinite(value) else 0.0
