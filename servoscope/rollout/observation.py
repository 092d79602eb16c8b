"""What the gate sees of one request: which arm served it, how it ended, and its stage durations."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from servoscope.stages import STAGES, TOTAL, Timing

# The columns the gate compares, in order: the total first, then each stage.
COLUMNS: tuple[str, ...] = (TOTAL, *(stage.value for stage in STAGES))


@dataclass(frozen=True, slots=True)
class Observation:
    """One request. ``failed`` covers errors and refusals alike (any answer but 2xx, or none);
    ``reason`` is the error's low-cardinality name. A failed request's durations are not compared."""

    canary: bool
    total_s: float = math.nan
    stages_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    failed: bool = False
    reason: str = ""

    def row(self) -> tuple[float, ...]:
        """Seconds per column of :data:`COLUMNS`; a stage the request never reached counts as zero."""
        return (self.total_s, *(self.stages_s.get(name, 0.0) for name in COLUMNS[1:]))


def from_timing(timing: Timing, canary: bool) -> Observation:
    """The observation of a finished request from its timing record (status 0 means no answer)."""
    durations = timing.durations()
    failed = not 200 <= timing.status < 300
    return Observation(
        canary=canary,
        total_s=durations.pop(TOTAL),
        stages_s=MappingProxyType(durations),
        failed=failed,
        reason=(timing.error or str(timing.status)) if failed else "",
    )
