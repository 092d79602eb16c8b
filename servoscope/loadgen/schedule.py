"""Closed- and open-loop load schedules, and the statistics of their results.

Closed loop: ``concurrency`` workers, each on its own keep-alive connection, send the next
request as soon as the previous one is answered, for a fixed duration. It finds the
saturation throughput, but hides queueing: a slow server slows the load down.

Open loop: requests are *scheduled* ahead (Poisson or constant arrivals at a rate) and sent
at their scheduled times whatever the server does; latency runs from the scheduled time, so
waiting for a free connection or for a late sender counts (no coordinated omission). How far
the sender itself fell behind its schedule is reported apart, to tell client from server.

The pure parts (arrival times, percentiles, summaries) are plain functions.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from servoscope.loadgen.client import ClientError, Connection, EncodedRequest, Endpoint

MAX_ARRIVALS = 1_000_000
MAX_DURATION_S = 3600.0


def _check(rate: float, duration_s: float) -> None:
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S}], got {duration_s}")
    if rate * duration_s > MAX_ARRIVALS:
        raise ValueError(f"{rate}/s for {duration_s}s is above {MAX_ARRIVALS} arrivals")


def poisson_arrivals(rate: float, duration_s: float, seed: int | None = None) -> list[float]:
    """Send times (seconds from the start) of a Poisson process at ``rate``/s over ``duration_s``."""
    _check(rate, duration_s)
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration_s and len(times) < MAX_ARRIVALS:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def constant_arrivals(rate: float, duration_s: float) -> list[float]:
    """Evenly spaced send times at ``rate``/s over ``duration_s``."""
    _check(rate, duration_s)
    return [i / rate for i in range(int(rate * duration_s))]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(slots=True)
class Sample:
    """One request: when it was due, sent and answered (monotonic seconds), and how it ended."""

    scheduled: float
    sent: float
    done: float = math.nan
    status: int = 0  # 0: no response (error)
    error: str = ""
    server_timing: str = ""
    late_s: float = 0.0  # open loop: how late the sender itself dispatched it (its own lag, not the server's)

    @property
    def latency_s(self) -> float:
        """From the scheduled time: waiting to be sent counts."""
        return self.done - self.scheduled

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(slots=True)
class RunResult:
    start: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    sender_late_count: int = 0  # open loop: sends that left more than LATE_S after their schedule
    sender_max_late_s: float = 0.0

    def in_window(self) -> list[Sample]:
        """Samples answered within the run's window (the measure of throughput)."""
        end = self.start + self.duration_s
        return [s for s in self.samples if s.done <= end]

    def throughput(self) -> float:
        """Successful responses per second within the window."""
        return sum(1 for s in self.in_window() if s.ok) / self.duration_s

    def latencies(self) -> list[float]:
        return [s.latency_s for s in self.samples if s.ok]

    def errors(self) -> int:
        return sum(1 for s in self.samples if not s.ok)


LATE_S = 0.002

OnStart = Callable[[RunResult], None]  # called once with the live result (samples are appended as they start)
OnSample = Callable[[Sample], None]  # called as each sample ends (answered or failed)


def _ignore(_: object) -> None:
    pass


async def _exchange(
    conn: Connection, request: EncodedRequest, sample: Sample, timeout_s: float, on_sample: OnSample = _ignore
) -> None:
    try:
        response = await conn.send(request, timeout_s)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ClientError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    else:
        sample.status = response.status
        sample.server_timing = response.server_timing
    sample.done = time.perf_counter()
    on_sample(sample)


def _failed(sample: Sample, error: str, on_sample: OnSample) -> None:
    sample.error, sample.done = error, time.perf_counter()
    on_sample(sample)


async def closed_loop(
    endpoint: Endpoint,
    requests: Sequence[EncodedRequest],
    concurrency: int,
    duration_s: float,
    timeout_s: float = 60.0,
    max_requests: int = MAX_ARRIVALS,
    *,
    on_start: OnStart = _ignore,
    on_sample: OnSample = _ignore,
) -> RunResult:
    """``concurrency`` workers send back to back for ``duration_s``; requests cycle through ``requests``."""
    if not requests or concurrency < 1:
        raise ValueError(f"need requests and concurrency >= 1, got {len(requests)} requests, concurrency {concurrency}")
    _check(1.0, duration_s)
    conns = [await Connection.open(endpoint) for _ in range(concurrency)]
    result = RunResult(time.perf_counter(), duration_s)
    on_start(result)
    deadline = result.start + duration_s
    counter = iter(range(max_requests))

    async def worker(conn: Connection) -> None:
        for i in counter:
            now = time.perf_counter()
            if now >= deadline:
                return
            sample = Sample(now, now)
            result.samples.append(sample)
            if conn.closed:
                try:
                    conn = await Connection.open(endpoint)
                except (OSError, TimeoutError) as exc:
                    _failed(sample, f"connect: {exc}", on_sample)
                    return
            await _exchange(conn, requests[i % len(requests)], sample, timeout_s, on_sample)
        conn.close()

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return result


class _Pool:
    """Idle keep-alive connections, opened on demand up to ``limit``; waiting for one counts as latency."""

    def __init__(self, endpoint: Endpoint, limit: int) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.opened: list[Connection] = []
        self.count = 0  # opened or opening, never above the limit
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def get(self) -> Connection:
        if self.idle.empty() and self.count < self.limit:
            self.count += 1  # before the await, so concurrent callers see it
            try:
                conn = await Connection.open(self.endpoint)
            except BaseException:
                self.count -= 1
                raise
            self.opened.append(conn)
            return conn
        conn = await self.idle.get()
        if conn.closed:
            try:
                conn = await Connection.open(self.endpoint)
            except BaseException:
                self.count -= 1  # the slot is free again, or waiters would wait for it forever
                raise
            self.opened.append(conn)
        return conn

    def put(self, conn: Connection) -> None:
        self.idle.put_nowait(conn)

    def close(self) -> None:
        for c in self.opened:
            c.close()


async def open_loop(
    endpoint: Endpoint,
    requests: Sequence[EncodedRequest],
    arrivals: Sequence[float],
    max_connections: int = 256,
    timeout_s: float = 60.0,
    *,
    on_start: OnStart = _ignore,
    on_sample: OnSample = _ignore,
) -> RunResult:
    """Send ``requests`` (cycled) at the ``arrivals`` offsets, whatever the server does.

    Throughput is measured over the schedule's span; every scheduled request is awaited
    (each bounded by ``timeout_s``) before returning.
    """
    if not requests or not arrivals or len(arrivals) > MAX_ARRIVALS:
        raise ValueError(f"need requests and 1..{MAX_ARRIVALS} arrivals, got {len(requests)} and {len(arrivals)}")
    pool = _Pool(endpoint, max_connections)
    span = max(arrivals[-1], 1e-3)
    result = RunResult(time.perf_counter() + 0.01, span)
    on_start(result)
    tasks: list[asyncio.Task[None]] = []

    async def one(sample: Sample, request: EncodedRequest) -> None:
        try:
            conn = await pool.get()
        except (OSError, TimeoutError) as exc:
            _failed(sample, f"connect: {exc}", on_sample)
            return
        sample.sent = time.perf_counter()
        await _exchange(conn, request, sample, timeout_s, on_sample)
        pool.put(conn)

    try:
        for i, offset in enumerate(arrivals):
            due = result.start + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = time.perf_counter() - due
            if late > LATE_S:
                result.sender_late_count += 1
            result.sender_max_late_s = max(result.sender_max_late_s, late)
            sample = Sample(due, due, late_s=max(0.0, late))
            result.samples.append(sample)
            tasks.append(asyncio.create_task(one(sample, requests[i % len(requests)])))
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        pool.close()
    return result


async def sequential(
    endpoint: Endpoint, requests: Sequence[EncodedRequest], count: int, max_duration_s: float, timeout_s: float = 60.0
) -> RunResult:
    """One request at a time on one connection: the unloaded latency. Stops at ``count`` or ``max_duration_s``."""
    _check(1.0, max_duration_s)
    conn = await Connection.open(endpoint)
    result = RunResult(time.perf_counter(), max_duration_s)
    try:
        for i in range(count):
            now = time.perf_counter()
            if now - result.start >= max_duration_s:
                break
            if conn.closed:
                conn = await Connection.open(endpoint)
            sample = Sample(now, now)
            result.samples.append(sample)
            await _exchange(conn, requests[i % len(requests)], sample, timeout_s)
    finally:
        conn.close()
    result.duration_s = max(1e-3, time.perf_counter() - result.start)
    return result
