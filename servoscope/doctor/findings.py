"""What the doctor's steps hand on: the attribution, findings and their fixes, and the words and
numbers every rule writes them with (``12.3 ms``, ``48 KiB``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DELIVERY = "delivery"  # attributed beside the stages: after respond, until the client acknowledged

Scope = Literal["infrastructure", "configuration", "model", "clients"]
# What a fix changes, for the planner's model to predict its effect (servoscope.doctor.predict).
Remedy = Literal[
    "replica+1",
    "workers+1",
    "baseline-config",
    "baseline-inference",
    "baseline-machine",
    "baseline-mix",
    "baseline-batching",
    "revert",
]


@dataclass(frozen=True, slots=True)
class Attribution:
    deltas_s: dict[str, float]  # per-stage P95 change, seconds
    shares: dict[str, float]  # of the summed positive P95 increases, 0–1
    carrier: str | None


@dataclass(frozen=True, slots=True)
class Fix:
    action: str
    effect: str
    scope: Scope
    remedy: Remedy | None = None  # None: an effect the planner's model cannot predict
    predicted_p95_s: tuple[float, float] | None = None  # (now, after the fix): measured, then predicted


@dataclass(frozen=True, slots=True)
class Finding:
    cause: str
    summary: str
    confidence: float
    evidence: tuple[str, ...]
    fixes: tuple[Fix, ...] = field(default_factory=tuple)


def ratio(now: float, base: float) -> float:
    return now / base if base > 0 else (1.0 if now == 0 else float("inf"))


def conf(x: float) -> float:
    return round(min(max(x, 0.0), 0.95), 2)


def pct(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.0f}%"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def kib(n: float) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def mpx(n: float) -> str:
    return f"{n / 1e6:.2f} Mpx"


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
