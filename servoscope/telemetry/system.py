"""The system collector: CPU, memory, I/O and the serving process, read through psutil.

One :meth:`SystemCollector.sample` reads a handful of ``/proc`` files (never the process
table) and reports utilization ratios (0–1) and rates *since the previous sample*, the way psutil's
``cpu_percent(interval=None)`` does: the first sample only primes, so its CPU ratios and rates
are ``None``. The collector keeps its own previous counters rather than psutil's
module-wide ones, so another caller of ``psutil.cpu_percent`` cannot shorten its interval.

Sampling never raises: a field psutil cannot read is ``None`` (and logged once).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psutil

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.telemetry._guard import FieldGuard

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SystemReading:
    """One sample of the machine and the serving process. ``None``: unreadable, or no interval yet."""

    interval_s: float | None
    """Seconds since the previous sample (the window of every ``*_ratio``, ``*_cores`` and ``*_per_s``)."""
    cpu_count: int | None
    cpu_utilization_ratio: float | None
    cpu_core_utilization_ratio: tuple[float, ...] | None
    load_average: tuple[float, float, float] | None
    """1, 5 and 15 minute load averages (runnable tasks, not percent)."""
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    memory_used_ratio: float | None
    swap_total_bytes: int | None
    swap_used_bytes: int | None
    swap_used_ratio: float | None
    net_sent_bytes_per_s: float | None
    net_recv_bytes_per_s: float | None
    disk_read_bytes_per_s: float | None
    disk_write_bytes_per_s: float | None
    ctx_switches_per_s: float | None
    """Machine-wide context switches."""
    process_cpu_cores: float | None
    """Cores kept busy (CPU seconds per second), so up to ``cpu_count``."""
    process_rss_bytes: int | None
    process_threads: int | None
    process_voluntary_ctx_switches_per_s: float | None
    process_involuntary_ctx_switches_per_s: float | None
    process_tcp_connections: Mapping[str, int] | None
    """Open TCP connections of the process, counted by status (``ESTABLISHED``, ``LISTEN`` …)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Counters(NamedTuple):
    """Cumulative counters of one sample; the next sample turns their differences into rates."""

    at: float
    cpu: Any | None
    cpu_per_core: Sequence[Any] | None
    net: tuple[int, int] | None
    disk: tuple[int, int] | None
    ctx_switches: int | None
    process_cpu_s: float | None
    process_ctx: tuple[int, int] | None


_NO_COUNTERS = _Counters(0.0, None, None, None, None, None, None, None)
"""What the first sample compares with: nothing, so every rate is ``None``."""


def busy_ratio(before: Any, after: Any) -> float | None:
    """Busy CPU share (0–1) between two ``psutil.cpu_times()`` readings, as ``psutil.cpu_percent`` computes
    it (÷ 100)."""
    delta = type(after)(*(max(0.0, a - b) for a, b in zip(after, before)))
    total = _total_time(delta)
    if total <= 0:
        return None
    busy = total - float(delta.idle) - float(getattr(delta, "iowait", 0.0))
    return round(min(1.0, max(0.0, busy / total)), 3)


def _total_time(times: Any) -> float:
    # On Linux, guest time is already counted in user and nice time.
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _rate(before: float | None, after: float | None, interval_s: float | None) -> float | None:
    """Per-second rate of a cumulative counter; ``None`` without an interval or when the counter reset."""
    if before is None or after is None or not interval_s or after < before:
        return None
    return (after - before) / interval_s


def _pick(pair: tuple[int, int] | None, i: int) -> int | None:
    return None if pair is None else pair[i]


class SystemCollector:
    """Samples the machine and one process (by default, the current one). Thread-safe."""

    def __init__(self, process: psutil.Process | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._process = process if process is not None else psutil.Process(os.getpid())
        self._clock = clock
        self._guard = FieldGuard(logger)
        self._previous: _Counters | None = None
        self._lock = threading.Lock()

    def sample(self) -> SystemReading:
        with self._lock:
            return self._sample()

    def _sample(self) -> SystemReading:
        read = self._guard.read
        proc = self._process
        now = _Counters(
            at=self._clock.now(),
            cpu=read("cpu_times", psutil.cpu_times),
            cpu_per_core=read("cpu_times_per_core", lambda: psutil.cpu_times(percpu=True)),
            net=read("net_io_counters", _net_counters),
            disk=read("disk_io_counters", _disk_counters),
            ctx_switches=read("cpu_stats", lambda: psutil.cpu_stats().ctx_switches),
            process_cpu_s=None,
            process_ctx=None,
        )
        with proc.oneshot():
            now = now._replace(
                process_cpu_s=read("process_cpu_times", lambda: _process_cpu_s(proc)),
                process_ctx=read("process_ctx_switches", lambda: _process_ctx_switches(proc)),
            )
            rss = read("process_memory_info", lambda: int(proc.memory_info().rss))
            threads = read("process_threads", proc.num_threads)
        memory = read("virtual_memory", psutil.virtual_memory)
        swap = read("swap_memory", psutil.swap_memory)
        prev, self._previous = self._previous, now
        interval = None if prev is None or now.at <= prev.at else now.at - prev.at
        before = prev if prev is not None and interval is not None else _NO_COUNTERS
        return SystemReading(
            interval_s=interval,
            cpu_count=read("cpu_count", psutil.cpu_count),
            cpu_utilization_ratio=_cpu_ratio(before.cpu, now.cpu),
            cpu_core_utilization_ratio=_per_core_ratio(before.cpu_per_core, now.cpu_per_core),
            load_average=read("load_average", lambda: _load_average(psutil.getloadavg())),
            memory_total_bytes=None if memory is None else int(memory.total),
            memory_available_bytes=None if memory is None else int(memory.available),
            memory_used_ratio=None if memory is None else round(float(memory.percent) / 100.0, 3),
            swap_total_bytes=None if swap is None else int(swap.total),
            swap_used_bytes=None if swap is None else int(swap.used),
            swap_used_ratio=None if swap is None else round(float(swap.percent) / 100.0, 3),
            net_sent_bytes_per_s=_rate(_pick(before.net, 0), _pick(now.net, 0), interval),
            net_recv_bytes_per_s=_rate(_pick(before.net, 1), _pick(now.net, 1), interval),
            disk_read_bytes_per_s=_rate(_pick(before.disk, 0), _pick(now.disk, 0), interval),
            disk_write_bytes_per_s=_rate(_pick(before.disk, 1), _pick(now.disk, 1), interval),
            ctx_switches_per_s=_rate(before.ctx_switches, now.ctx_switches, interval),
            process_cpu_cores=_cores(_rate(before.process_cpu_s, now.process_cpu_s, interval)),
            process_rss_bytes=rss,
            process_threads=threads,
            process_voluntary_ctx_switches_per_s=_rate(
                _pick(before.process_ctx, 0), _pick(now.process_ctx, 0), interval
            ),
            process_involuntary_ctx_switches_per_s=_rate(
                _pick(before.process_ctx, 1), _pick(now.process_ctx, 1), interval
            ),
            process_tcp_connections=read("process_tcp_connections", lambda: _tcp_by_status(proc)),
        )


def _net_counters() -> tuple[int, int] | None:
    counters = psutil.net_io_counters()
    return None if counters is None else (counters.bytes_sent, counters.bytes_recv)


def _disk_counters() -> tuple[int, int] | None:
    counters = psutil.disk_io_counters()  # None on a machine without disks (some containers)
    return None if counters is None else (counters.read_bytes, counters.write_bytes)


def _process_cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _process_ctx_switches(proc: psutil.Process) -> tuple[int, int]:
    switches = proc.num_ctx_switches()
    return (int(switches.voluntary), int(switches.involuntary))


def _load_average(load: tuple[float, float, float]) -> tuple[float, float, float]:
    return (round(load[0], 2), round(load[1], 2), round(load[2], 2))


def _tcp_by_status(proc: psutil.Process) -> dict[str, int]:
    return dict(sorted(Counter(str(c.status) for c in proc.net_connections(kind="tcp")).items()))


def _cpu_ratio(before: Any | None, after: Any | None) -> float | None:
    return None if before is None or after is None else busy_ratio(before, after)


def _per_core_ratio(before: Sequence[Any] | None, after: Sequence[Any] | None) -> tuple[float, ...] | None:
    if before is None or after is None or len(before) != len(after):
        return None  # no interval yet, or a core went on or off line
    ratios = tuple(busy_ratio(b, a) for b, a in zip(before, after))
    return None if any(r is None for r in ratios) else tuple(r for r in ratios if r is not None)


def _cores(cpu_s_per_s: float | None) -> float | None:
    """CPU seconds per second: cores kept busy."""
    return None if cpu_s_per_s is None else round(cpu_s_per_s, 3)
