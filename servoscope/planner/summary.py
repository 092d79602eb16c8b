"""A simulation's figures: percentiles of the total, throughput, refusals, per-stage mean waits.

Percentiles are linear between closest ranks, as the load generator's (``numpy``'s default).
Requests that arrived before ``warmup_s`` are left out, so a run starting empty does not
flatter the figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from servoscope.planner.sim import SimResult
from servoscope.stages import Stage

STAGES: tuple[str, ...] = (
    Stage.PREPROCESS_WAIT.value,
    Stage.PREPROCESS.value,
    Stage.BATCH_WAIT.value,
    Stage.INFERENCE.value,
    Stage.POSTPROCESS.value,
)


@dataclass(frozen=True)
class Summary:
    offered_per_s: float
    answered_per_s: float
    requests: int
    refused: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    stage_mean_ms: dict[str, float]
    mean_batch_size: float
    utilization: float  # share of instance time spent on batches

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(result: SimResult, warmup_s: float = 0.0, end_s: float | None = None) -> Summary:
    """The figures of the requests that arrived in [``warmup_s``, ``end_s``) (``end_s``: the last arrival)."""
    arrival = result.arrival
    end = float(arrival[-1]) if end_s is None and len(arrival) else (end_s or 0.0)
    keep = (arrival >= warmup_s) & (arrival < end) if end > warmup_s else np.ones(len(arrival), dtype=bool)
    span = max(end - warmup_s, 1e-9)
    done = keep & ~result.refused
    totals = result.total[done]
    stages = {name: _mean_ms(getattr(result, name)[done]) for name in STAGES}
    sizes = result.batch_size[done]
    return Summary(
        offered_per_s=int(keep.sum()) / span,
        answered_per_s=int(done.sum()) / span,
        requests=int(keep.sum()),
        refused=int((keep & result.refused).sum()),
        p50_ms=_pct_ms(totals, 50),
        p95_ms=_pct_ms(totals, 95),
        p99_ms=_pct_ms(totals, 99),
        mean_ms=_mean_ms(totals),
        stage_mean_ms=stages,
        mean_batch_size=float(sizes.mean()) if len(sizes) else math.nan,
        utilization=_utilization(result),
    )


def _utilization(result: SimResult) -> float:
    """Instance busy share over the whole run, up to the last answer."""
    span = float(np.nanmax(np.append(result.arrival + result.total, result.arrival))) if len(result.arrival) else 0.0
    return result.busy_s / (result.instances * span) if span > 0 else math.nan


def _pct_ms(values: np.ndarray, q: float) -> float:
    return 1000 * float(np.percentile(values, q)) if len(values) else math.nan


def _mean_ms(values: np.ndarray) -> float:
    return 1000 * float(values.mean()) if len(values) else math.nan
