"""Warnings below the alarm: strong signals an engineer should see before they become the incident,
reported whatever the confirmation says — CPU used outside the service, swap in use, a throttled
GPU, refusals rising short of confirmed, slow uploads in the tail, a changed deployment."""

from __future__ import annotations

from servoscope.doctor.availability import Availability
from servoscope.doctor.changes import Change
from servoscope.doctor.evidence import Evidence
from servoscope.doctor.findings import ms

OUTSIDE_CORES = 1.0  # CPU outside the service, in cores
SLOW_CLOCK = 0.8  # GPU SM clock below this share of its maximum
LAG_S = 0.05  # event-loop lag P95
SLOW_TAIL = 10.0  # ingest P99 this many times the baseline's …
SLOW_TAIL_S = 0.1  # … and at least this long: a few clients upload slowly


def warnings(base: Evidence, now: Evidence, availability: Availability, changes: tuple[Change, ...]) -> tuple[str, ...]:
    said = []
    if now.outside_cpu_cores >= OUTSIDE_CORES:
        said.append(
            f"outside the service, {now.outside_cpu_cores:.1f} cores of CPU are busy "
            f"(baseline {base.outside_cpu_cores:.1f}) of {now.cpu_count}: neighbours share the machine"
        )
    if now.swap_used_ratio:
        said.append(f"swap in use: {now.swap_used_ratio:.0%} (baseline {base.swap_used_ratio or 0:.0%})")
    if now.gpu_throttle_reasons or (now.gpu_clock_ratio is not None and now.gpu_clock_ratio < SLOW_CLOCK):
        clock = "unknown" if now.gpu_clock_ratio is None else f"{now.gpu_clock_ratio:.0%}"
        reasons = ", ".join(now.gpu_throttle_reasons) or "no reason named"
        said.append(f"GPU clocks held down: SM clock {clock} of its maximum; {reasons}")
    if availability.rising:
        said.append(f"refusals and errors rising: {availability.describe()} ({availability.z:.1f} standard errors)")
    if now.event_loop_lag_p95_s >= LAG_S:
        said.append(f"event-loop lag P95 {ms(now.event_loop_lag_p95_s)} (baseline {ms(base.event_loop_lag_p95_s)})")
    ingest = (base.stages["ingest"].p99, now.stages["ingest"].p99)
    if now.stages["ingest"].count and ingest[1] >= max(SLOW_TAIL * ingest[0], SLOW_TAIL_S):
        said.append(
            f"a few clients upload slowly: ingest P99 {ms(ingest[0])} → {ms(ingest[1])} "
            f"(P95 {ms(now.stages['ingest'].p95)}); requests in ingest now {now.ingesting}"
        )
    said += [f"changed between the windows: {c.describe()}" for c in changes]
    return tuple(said)
