"""A load run's figures: throughput, latency percentiles, and the server's own stage times."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from servoscope.loadgen.schedule import RunResult, percentile
from servoscope.stages import STAGE_NAMES, parse_server_timing


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_stage_mean_ms: dict[str, float]  # from the Server-Timing headers of successful responses
    sender_late_count: int
    sender_max_late_ms: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stage_means_ms(headers: list[str]) -> dict[str, float]:
    """Mean milliseconds per stage over ``Server-Timing`` header values (stages in pipeline order)."""
    sums: dict[str, float] = {}
    for header in headers:
        for name, seconds in parse_server_timing(header).items():
            sums[name] = sums.get(name, 0.0) + seconds
    order = {name: i for i, name in enumerate(STAGE_NAMES)}
    return {k: round(1000 * v / len(headers), 3) for k, v in sorted(sums.items(), key=lambda kv: order.get(kv[0], 99))}


def summarize(result: RunResult) -> Summary:
    latencies = result.latencies()
    ok = [s for s in result.samples if s.ok and s.server_timing]
    return Summary(
        requests=len(result.samples),
        errors=result.errors(),
        throughput_rps=result.throughput(),
        p50_ms=1000 * percentile(latencies, 50),
        p95_ms=1000 * percentile(latencies, 95),
        p99_ms=1000 * percentile(latencies, 99),
        server_stage_mean_ms=stage_means_ms([s.server_timing for s in ok]),
        sender_late_count=result.sender_late_count,
        sender_max_late_ms=1000 * result.sender_max_late_s,
    )
