"""Slow clients on the way in: a rise carried by ``ingest`` (the body arriving) is either clients on
slow links — each upload's rate fell, requests pile up in ingest, the body-rate rule answers 408 —
or the server's own ingest stalling: its event loop lags or its CPU is saturated, so it reads
bodies that are already there too late. They are told apart by who is slow: a stall delays every
request (the event-loop lag grows by about as much as ingest, or the median ingest grows with a
saturated CPU), slow links only their own requests (the median ingest stays, the tail grows).
"""

from __future__ import annotations

from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import Attribution, Finding, Fix, conf, kib, ms, ratio

MIN_SHARE = 0.5  # of the rise, carried by ingest
STALL_LAG_SHARE = 0.5  # event-loop lag rose by at least this share of ingest's rise: the server stalls
SATURATED_CPU_RATIO = 0.95
MEDIAN_RISE = 3.0  # the median ingest this many times the baseline's (and MIN_MEDIAN_RISE_S more): every request
MIN_MEDIAN_RISE_S = 0.005


def upload_rate(e: Evidence) -> float:
    """Bytes per second of a typical upload: the median upload over the median ingest time (0: unknown)."""
    seconds = e.stages["ingest"].p50
    return e.input_bytes_p50 / seconds if seconds > 0 else 0.0


def slow_uploads(base: Evidence, now: Evidence, a: Attribution) -> Finding | None:
    share = a.shares.get("ingest", 0.0)
    if a.carrier != "ingest" or share < MIN_SHARE:
        return None
    rise = a.deltas_s["ingest"]
    lag = (base.event_loop_lag_p95_s, now.event_loop_lag_p95_s)
    median = (base.stages["ingest"].p50, now.stages["ingest"].p50)
    everyone = median[1] >= max(MEDIAN_RISE * median[0], median[0] + MIN_MEDIAN_RISE_S)
    saturated = now.machine_cpu_utilization_ratio >= SATURATED_CPU_RATIO
    stalled = lag[1] - lag[0] >= STALL_LAG_SHARE * rise or (everyone and saturated)
    rates = (upload_rate(base), upload_rate(now))
    tail = now.input_bytes_p95 / now.stages["ingest"].p95 if now.stages["ingest"].p95 > 0 else 0.0
    timeouts = now.by_code.get("408", 0.0)
    ingesting = "unknown" if now.ingesting is None else str(now.ingesting)
    lines = (
        f"ingest P95 {ms(base.stages['ingest'].p95)} → {ms(now.stages['ingest'].p95)}: {share:.0%} of the rise",
        f"median upload {kib(base.input_bytes_p50)} at {kib(rates[0])}/s → {kib(now.input_bytes_p50)} at "
        f"{kib(rates[1])}/s (×{ratio(rates[1], rates[0]):.2f}), the slowest 5 % at about {kib(tail)}/s; "
        f"median ingest {ms(median[0])} → {ms(median[1])}; requests in ingest now {ingesting}; "
        f"408 (body too slow) {timeouts:.0f} in the window",
        f"event-loop lag P95 {ms(lag[0])} → {ms(lag[1])}; machine CPU {base.machine_cpu_utilization_ratio:.0%} → "
        f"{now.machine_cpu_utilization_ratio:.0%}",
    )
    if stalled:
        return Finding(
            "ingest-stall",
            "the server reads request bodies late: its event loop lags or its CPU is saturated",
            conf(0.5 + 0.3 * share),
            lines,
            (
                Fix(
                    "find what blocks the event loop (a synchronous call, a CPU-bound handler) or starves the "
                    "process of CPU, and move it off the loop",
                    f"ingest P95 back toward {ms(base.stages['ingest'].p95)}",
                    "infrastructure",
                ),
            ),
        )
    return Finding(
        "slow-uploads",
        "clients on slow links: their uploads arrive slowly while the server keeps up",
        conf(0.6 + 0.3 * share),
        lines,
        (
            Fix(
                "put a buffering proxy in front (it receives slow uploads and hands over whole bodies), and keep "
                "the body-rate rule (min_body_rate_bytes_s) so slow senders cannot hold ingest places",
                f"ingest P95 back toward {ms(base.stages['ingest'].p95)} for everyone else",
                "infrastructure",
            ),
            Fix(
                "have clients resize before upload (smaller bodies on slow links)",
                "shorter uploads on the same links",
                "clients",
            ),
        ),
    )
