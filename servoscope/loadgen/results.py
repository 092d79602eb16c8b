"""A load run's result, from its samples: counts, the HDR latency histogram, per-stage
percentiles from ``Server-Timing``, the sender's own lateness, and a per-second timeline.

Pure functions of the samples (and the schedule), so a result can be rebuilt and checked.
Latency runs from each request's *scheduled* time (see :mod:`schedule`); percentiles are over
successful (200) responses, and every other outcome is counted. The histogram is
HdrHistogram (microseconds, 3 significant digits), stored base64-encoded so another tool can
decode it (``HdrHistogram.decode``) and merge runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from servoscope.loadgen.schedule import LATE_S, RunResult, Sample, percentile
from servoscope.stages import STAGE_NAMES, parse_server_timing

HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000  # one hour
HIST_DIGITS = 3
TABLE_PERCENTILES: tuple[float, ...] = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)
MAX_TIMELINE_S = 7200
MAX_ERROR_KINDS = 10


def histogram(latencies_s: Iterable[float]) -> HdrHistogram:
    hist = HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)
    for seconds in latencies_s:
        record(hist, seconds)
    return hist


def record(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(min(HIST_HIGHEST_US, max(HIST_LOWEST_US, round(seconds * 1e6))))


def hist_ms(hist: HdrHistogram, q: float) -> float:
    """The ``q``-th percentile in milliseconds (NaN when empty)."""
    return hist.get_value_at_percentile(q) / 1000.0 if hist.get_total_count() else math.nan


def latency_json(hist: HdrHistogram) -> dict[str, Any]:
    count = hist.get_total_count()
    summary = {f"p{q:g}".replace(".", "_"): hist_ms(hist, q) for q in (50, 90, 95, 99, 99.9)}
    return {
        "count": count,
        **summary,
        "max": hist.get_max_value() / 1000.0 if count else math.nan,
        "mean": hist.get_mean_value() / 1000.0 if count else math.nan,
    }


def histogram_json(hist: HdrHistogram) -> dict[str, Any]:
    return {
        "unit": "microseconds",
        "lowest": HIST_LOWEST_US,
        "highest": HIST_HIGHEST_US,
        "significant_figures": HIST_DIGITS,
        "hdr_base64": hist.encode().decode("ascii"),
        "percentiles_ms": [[q, hist_ms(hist, q)] for q in TABLE_PERCENTILES],
    }


def counts(samples: Sequence[Sample], scheduled: int) -> dict[str, Any]:
    """What happened to each scheduled request. ``sent`` = answered + transport errors + unfinished."""
    by_status = Counter(str(s.status) for s in samples if s.status)
    failed = Counter(s.error.split(":", 1)[0] for s in samples if not s.status and s.error)
    unfinished = sum(1 for s in samples if not s.status and not s.error)
    answered = sum(by_status.values())
    return {
        "scheduled": scheduled,
        "sent": len(samples),
        "not_sent": max(0, scheduled - len(samples)),
        "answered": answered,
        "answered_by_status": dict(sorted(by_status.items())),
        "ok": by_status.get("200", 0),
        "transport_errors": sum(failed.values()),
        "transport_errors_by_kind": dict(failed.most_common(MAX_ERROR_KINDS)),
        "unfinished": unfinished,  # still unanswered when the run's hard time cap stopped it
    }


def stage_percentiles(headers: Iterable[str]) -> dict[str, dict[str, float]]:
    """P50/P95/P99 and mean (ms) of each stage over ``Server-Timing`` header values, in pipeline order."""
    values: dict[str, list[float]] = {}
    for header in headers:
        for name, seconds in parse_server_timing(header).items():
            values.setdefault(name, []).append(1000 * seconds)
    order = {name: i for i, name in enumerate(STAGE_NAMES)}
    out: dict[str, dict[str, float]] = {}
    for name in sorted(values, key=lambda n: (order.get(n, len(order)), n)):
        v = values[name]
        out[name] = {
            "count": len(v),
            "p50": percentile(v, 50),
            "p95": percentile(v, 95),
            "p99": percentile(v, 99),
            "mean": sum(v) / len(v),
        }
    return out


def sender_json(samples: Sequence[Sample]) -> dict[str, Any]:
    """How late the load generator itself dispatched requests (open loop): its own lag, not the server's."""
    late = [s.late_s for s in samples]
    return {
        "late_threshold_ms": 1000 * LATE_S,
        "late_count": sum(1 for x in late if x > LATE_S),
        "late_p50_ms": 1000 * percentile(late, 50),
        "late_p99_ms": 1000 * percentile(late, 99),
        "late_max_ms": 1000 * max(late, default=math.nan),
    }


def timeline(samples: Sequence[Sample], start: float, offsets: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per second from ``start``: requests offered (scheduled; closed loop: sent), sent,
    answered, errors, and the P50/P95/P99 (ms) of the successful responses answered in that second."""
    ends = [s.done for s in samples if not math.isnan(s.done)]
    last = max([*ends, *(start + o for o in offsets or ())], default=start)
    seconds = min(MAX_TIMELINE_S, max(1, math.ceil(last - start)))
    offered = [0] * seconds
    sent = [0] * seconds
    answered = [0] * seconds
    errors = [0] * seconds
    latencies: list[list[float]] = [[] for _ in range(seconds)]

    def slot(t: float) -> int:
        return min(seconds - 1, max(0, math.floor(t - start)))

    for offset in offsets if offsets is not None else ():
        offered[slot(start + offset)] += 1
    for s in samples:
        if offsets is None:
            offered[slot(s.scheduled)] += 1
        sent[slot(s.sent)] += 1
        if math.isnan(s.done):
            continue
        i = slot(s.done)
        if s.status:
            answered[i] += 1
        if not s.ok:
            errors[i] += 1
        else:
            latencies[i].append(1000 * s.latency_s)
    return [
        {
            "t_s": i,
            "offered": offered[i],
            "sent": sent[i],
            "answered": answered[i],
            "errors": errors[i],
            "p50_ms": percentile(latencies[i], 50),
            "p95_ms": percentile(latencies[i], 95),
            "p99_ms": percentile(latencies[i], 99),
        }
        for i in range(seconds)
    ]


def build(result: RunResult, offsets: Sequence[float] | None, scheduled: int, capped: bool) -> dict[str, Any]:
    """The measured part of a result file (settings and profile are added by the caller)."""
    samples = result.samples
    ok = [s for s in samples if s.ok]
    hist = histogram(s.latency_s for s in ok)
    ends = [s.done for s in samples if not math.isnan(s.done)]
    elapsed = max(1e-3, max(ends, default=result.start) - result.start)
    tally = counts(samples, scheduled)
    return {
        "elapsed_s": elapsed,
        "hit_time_cap": capped,
        "counts": tally,
        "throughput_per_s": {
            "sent": len(samples) / max(result.duration_s, 1e-3),
            "answered": tally["answered"] / elapsed,
            "ok_in_window": result.throughput(),
        },
        "latency_ms": latency_json(hist),
        "latency_histogram": histogram_json(hist),
        "sender": sender_json(samples),
        "stages_ms": stage_percentiles(s.server_timing for s in ok if s.server_timing),
        "timeline": timeline(samples, result.start, offsets),
    }
