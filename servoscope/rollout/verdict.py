"""The gate's answer: PASS, FAIL or INCONCLUSIVE, with the evidence behind it."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any


class Outcome(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"

    def __str__(self) -> str:
        return self.value


class Check(str, enum.Enum):
    LATENCY = "latency"
    ERRORS = "errors"
    DISAGREEMENT = "disagreement"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Evidence:
    """One check's log evidence against "no regression", and the log evidence at which it fails."""

    check: Check
    log_e: float
    boundary: float

    @property
    def crossed(self) -> bool:
        return self.log_e >= self.boundary

    def json(self) -> dict[str, Any]:
        return {"check": self.check.value, "log_e": _finite(self.log_e), "boundary": _finite(self.boundary)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """``check`` and ``stage`` say what failed (the stage for a latency FAIL: the one whose own
    durations carry the most evidence of a slowdown); ``reason`` says it in words."""

    outcome: Outcome
    reason: str
    evidence: tuple[Evidence, ...]
    canary_requests: int
    baseline_requests: int
    mirrored_requests: int = 0
    check: Check | None = None
    stage: str | None = None

    def json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the audit log and the endpoints that serve the verdict)."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "check": self.check.value if self.check else None,
            "stage": self.stage,
            "canary_requests": self.canary_requests,
            "baseline_requests": self.baseline_requests,
            "mirrored_requests": self.mirrored_requests,
            "evidence": [e.json() for e in self.evidence],
        }


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
