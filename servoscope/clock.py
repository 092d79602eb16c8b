"""The clock: monotonic seconds for durations, and a manual clock for tests and simulation."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...


class MonotonicClock:
    __slots__ = ()

    def now(self) -> float:
        return time.perf_counter()


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back, got {seconds}")
        self._now += seconds


SYSTEM_CLOCK: Clock = MonotonicClock()
