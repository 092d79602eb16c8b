"""Saturation throughput the way every bench measures it: a warm-up, then a closed loop at each
concurrency (each connection sends its next request when the last is answered); the best wins.
The CPU of the watched processes is metered per window, so a noisy machine shows in the figures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from servoscope.loadgen.client import EncodedRequest, Endpoint, run
from servoscope.loadgen.cpu import CpuMeter
from servoscope.loadgen.schedule import closed_loop
from servoscope.loadgen.stats import summarize


def best_closed_loop(
    endpoint: Endpoint,
    requests: Sequence[EncodedRequest],
    concurrencies: Sequence[int],
    window_s: float,
    warmup_s: float,
    watched_pids: Sequence[int],
    say: Callable[[str], None],
    label: str,
) -> dict[str, Any]:
    """``{"requests_per_s", "best_concurrency", "by_concurrency"}``; CPU metered over this process
    and ``watched_pids``."""
    run(closed_loop(endpoint, requests, concurrencies[0], warmup_s))
    by_c: dict[int, dict[str, Any]] = {}
    for c in concurrencies:
        meter = CpuMeter([os.getpid(), *watched_pids])
        meter.start()
        summary = summarize(run(closed_loop(endpoint, requests, c, window_s)))
        use = meter.stop()
        by_c[c] = {**summary.to_json(), "cpu": use.to_json()}
        stages = f"; server stages ms {summary.server_stage_mean_ms}" if summary.server_stage_mean_ms else ""
        say(
            f"  {label} C={c:>2}: {summary.throughput_rps:7.1f} req/s, p50 {summary.p50_ms:7.1f} ms, "
            f"errors {summary.errors}; {use.note()}{stages}"
        )
    best = max(by_c, key=lambda c: by_c[c]["throughput_rps"])
    return {"requests_per_s": by_c[best]["throughput_rps"], "best_concurrency": best, "by_concurrency": by_c}
