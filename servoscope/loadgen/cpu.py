"""Who used the CPU during a measurement: our processes, or others sharing the machine.

On a small shared machine a load figure means little without this: it reads the system's
busy time (``/proc/stat``) and the CPU time of the given processes (``/proc/<pid>/stat``),
and reports, in cores, what they used and what everything else used. Linux only; elsewhere
the figures are NaN.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Average cores busy over an interval."""

    busy_cores: float  # the whole machine
    ours_cores: float  # the watched processes
    steal_cores: float  # taken by the hypervisor for other guests

    @property
    def others_cores(self) -> float:
        return max(0.0, self.busy_cores - self.ours_cores)

    def to_json(self) -> dict[str, float]:
        return {"ours_cores": self.ours_cores, "others_cores": self.others_cores, "steal_cores": self.steal_cores}

    def note(self) -> str:
        """What the watched processes used, and what others sharing the machine took meanwhile."""
        return f"cpu ours {self.ours_cores:.2f}, others {self.others_cores:.2f}, steal {self.steal_cores:.2f} cores"


def system_ticks() -> tuple[int, int]:
    """Busy and steal ticks of all CPUs since boot (busy excludes idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields[:8]) - idle - steal, steal


def process_ticks(pid: int) -> int:
    """User + system ticks of process ``pid`` (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """``start()``, run the measurement, ``stop()`` → :class:`CpuUse` of ``pids`` against the rest."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start: tuple[float, int, int, int] | None = None

    def _snapshot(self) -> tuple[float, int, int, int]:
        busy, steal = system_ticks()
        return time.monotonic(), busy, steal, sum(process_ticks(p) for p in self.pids)

    def start(self) -> None:
        try:
            self._start = self._snapshot()
        except OSError:
            self._start = None

    def stop(self) -> CpuUse:
        if self._start is None:
            return CpuUse(math.nan, math.nan, math.nan)
        try:
            end = self._snapshot()
        except OSError:
            return CpuUse(math.nan, math.nan, math.nan)
        wall = max(1e-9, end[0] - self._start[0])
        busy, steal, ours = ((end[i] - self._start[i]) * _TICK_S / wall for i in (1, 2, 3))
        return CpuUse(busy, ours, steal)
