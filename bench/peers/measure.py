"""The measurements, the same for every server: servoscope's load generator over loopback.

Capacity: a closed loop (each of C connections sends its next request when the last is
answered) at each of :data:`CONCURRENCIES` after a warm-up; the best req/s wins. Latency: open
loops with Poisson arrivals at fractions of servoscope's capacity — the same schedule (same
seed) for every server — timed from each request's scheduled send, so queueing counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
from typing import Any

from servoscope.loadgen import (
    ClientError,
    Connection,
    EncodedRequest,
    Endpoint,
    Response,
    RunResult,
    open_loop,
    poisson_arrivals,
    run,
    summarize,
)
from servoscope.loadgen.capacity import best_closed_loop
from servoscope.loadgen.cpu import CpuMeter

CONCURRENCIES = (16, 64)
LOAD_FRACTIONS = (0.5, 0.8)
OPEN_TIMEOUT_S = 15.0  # an open-loop request not answered by then is an error
CAP_GRACE_S = 5.0  # an open loop stops this long after its last request's timeout, whatever is unanswered
ARRIVALS_SEED = 7


@dataclasses.dataclass(frozen=True, slots=True)
class Windows:
    """How long each measurement runs, seconds."""

    closed_s: float
    open_s: float
    warmup_s: float

    @classmethod
    def from_duration(cls, duration_s: float) -> Windows:
        return cls(duration_s, 2 * duration_s, max(1.0, duration_s / 4))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def first_answer(
    endpoint: Endpoint, request: EncodedRequest, process: subprocess.Popen[bytes], deadline_s: float
) -> Response:
    """The server's first 200 answer to ``request``, asked again every half second until the deadline."""
    deadline = time.monotonic() + deadline_s
    last = "no connection"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering ({last})")
        try:
            conn = await Connection.open(endpoint, timeout_s=2.0)
            try:
                response = await conn.send(request, timeout_s=30.0)
            finally:
                conn.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ClientError) as exc:
            last = f"{type(exc).__name__}: {exc}"  # not up yet (Ray's proxy answers chunked until then)
        else:
            if response.status == 200:
                return response
            last = f"HTTP {response.status}: {response.body[:200]!r}"
        await asyncio.sleep(0.5)
    raise TimeoutError(f"no answer within {deadline_s:g}s ({last})")


def saturation(
    endpoint: Endpoint, pids: list[int], requests: list[EncodedRequest], windows: Windows, label: str
) -> dict[str, Any]:
    """Closed loop at each concurrency, after a warm-up; the best req/s wins."""
    return best_closed_loop(
        endpoint, requests, CONCURRENCIES, windows.closed_s, windows.warmup_s, pids, progress, label
    )


async def capped_open_loop(
    endpoint: Endpoint, requests: list[EncodedRequest], arrivals: list[float], cap_s: float
) -> RunResult:
    """An open loop stopped after ``cap_s`` at the latest: a server far behind its schedule holds
    up to 256 connections' worth of requests, each for up to the timeout, and then a backlog.
    Requests unanswered at the cap count as errors."""
    live: list[RunResult] = []
    try:
        async with asyncio.timeout(cap_s):
            return await open_loop(endpoint, requests, arrivals, timeout_s=OPEN_TIMEOUT_S, on_start=live.append)
    except TimeoutError:
        if not live:
            raise
        return live[0]


def open_load(
    endpoint: Endpoint, pids: list[int], requests: list[EncodedRequest], rate: float, windows: Windows, label: str
) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s for the open window; latency from each scheduled send."""
    arrivals = poisson_arrivals(rate, windows.open_s, seed=ARRIVALS_SEED)
    meter = CpuMeter([os.getpid(), *pids])
    meter.start()
    summary = summarize(
        run(capped_open_loop(endpoint, requests, arrivals, windows.open_s + OPEN_TIMEOUT_S + CAP_GRACE_S))
    )
    use = meter.stop()
    progress(
        f"  {label} open loop {rate:.1f}/s: p50 {summary.p50_ms:.1f}, p95 {summary.p95_ms:.1f}, p99 "
        f"{summary.p99_ms:.1f} ms, "
        f"errors {summary.errors}/{summary.requests}, sender late {summary.sender_late_count}; {use.note()}"
    )
    return {"rate_per_s": rate, **summary.to_json(), "cpu": use.to_json()}
