"""Measure one configuration live: ``servoscope serve`` restarted on loopback with the knobs' flags,
then open-loop Poisson windows from the load generator at a short ladder of rates, to find the
highest rate whose P95 (from the scheduled send times) meets the objective. ``servoscope tune``
and ``bench/tune.py``'s exhaustive grid both measure with :func:`measure_config`, so they measure
the same way and their measuring times compare.

The ladder (:func:`next_rate`) starts at the rate the planner predicts, climbs by ``step`` while
the objective is met, falls by ``1.5 × step`` while it is not, and once it has one of each,
bisects between them (geometrically): ``steps`` windows in all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servoscope.drills.service import running
from servoscope.drills.traffic import REQUEST_TIMEOUT_S, requests_for
from servoscope.loadgen import Summary, open_loop, poisson_arrivals, run, summarize
from servoscope.planner.knobs import Knobs
from servoscope.planner.search import Outcome
from servoscope.stages import Stage

SEED = 1717
MIN_RATE_PER_S = 0.5
Say = Callable[[str], None]


@dataclass(frozen=True)
class Windows:
    """How long each configuration is measured: a warm-up, then ``steps`` windows of ``window_s``."""

    warmup_s: float = 2.0
    window_s: float = 8.0
    steps: int = 4
    step: float = 0.2  # the ladder's relative step

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.warmup_s >= 0 and self.steps >= 1 and 0 < self.step < 0.6):
            raise ValueError(f"windows need window_s > 0, warmup_s >= 0, steps >= 1 and 0 < step < 0.6, got {self}")


@dataclass(frozen=True)
class Target:
    """What to measure against: the model repository, the images to send, the objective."""

    repository: Path
    images: tuple[bytes, ...]
    slo_p95_ms: float
    log_dir: Path


def next_rate(history: Sequence[tuple[float, bool]], start: float, step: float) -> float:
    """The ladder's next rate after ``history`` ((rate, met the objective), in order)."""
    if not history:
        return max(MIN_RATE_PER_S, start)
    met = [r for r, ok in history if ok]
    failed = [r for r, ok in history if not ok]
    if met and failed:
        return math.sqrt(max(met) * min(r for r in failed if r > max(met))) if max(failed) > max(met) else max(met)
    last = history[-1][0]
    return last * (1 + step) if met else max(MIN_RATE_PER_S, last * (1 - 1.5 * step))


def meets(summary: Summary, slo_p95_ms: float) -> bool:
    return summary.errors == 0 and summary.requests > 0 and summary.p95_ms <= slo_p95_ms


def limiting_stage(summary: Summary) -> str:
    """Where requests wait at this load: for a preprocess worker (``queue``: the preprocess pool
    limits) or in the batcher for an instance (``batch_wait``: the instances limit)."""
    means = summary.server_stage_mean_ms
    queue, batch_wait = means.get(Stage.PREPROCESS_WAIT.value, 0.0), means.get(Stage.BATCH_WAIT.value, 0.0)
    if queue > batch_wait:
        return f"preprocess (requests wait {queue:.1f} ms for a worker, {batch_wait:.1f} ms in the batcher)"
    return f"inference (requests wait {batch_wait:.1f} ms in the batcher, {queue:.1f} ms for a preprocess worker)"


def measure_config(target: Target, knobs: Knobs, start_rate: float, windows: Windows, say: Say) -> Outcome:
    """``knobs`` measured on a freshly started server: the highest objective-meeting rate of the ladder."""
    started = time.monotonic()
    log = target.log_dir / f"serve-{'-'.join(knobs.flags()[1::2])}.log"
    history: list[tuple[float, bool]] = []
    summaries: list[Summary] = []
    with running(target.repository, ("--admission", "static", *knobs.flags()), log) as service:
        requests = requests_for(service.endpoint, list(target.images), 5)

        def window(rate: float, seconds: float, seed: int) -> Summary:
            schedule = poisson_arrivals(rate, seconds, seed) or [0.0]
            return summarize(run(open_loop(service.endpoint, requests, schedule, timeout_s=REQUEST_TIMEOUT_S)))

        if windows.warmup_s:
            window(max(MIN_RATE_PER_S, 0.5 * start_rate), windows.warmup_s, SEED - 1)
        for i in range(windows.steps):
            rate = next_rate(history, start_rate, windows.step)
            summary = window(rate, windows.window_s, SEED + i)
            history.append((rate, meets(summary, target.slo_p95_ms)))
            summaries.append(summary)
            say(f"    {rate:7.1f} req/s: P95 {summary.p95_ms:7.1f} ms{'' if history[-1][1] else '  (misses)'}")
    return _outcome(history, summaries, time.monotonic() - started)


def _outcome(history: list[tuple[float, bool]], summaries: list[Summary], measuring_s: float) -> Outcome:
    points = tuple((rate, s.p95_ms) for (rate, _), s in zip(history, summaries, strict=True))
    met = [(rate, s) for (rate, ok), s in zip(history, summaries, strict=True) if ok]
    best_rate, best = max(met, key=lambda m: m[0]) if met else (0.0, None)
    # where the objective broke: the lowest window above the best one that met it
    above = [s for (rate, _), s in zip(history, summaries, strict=True) if rate > best_rate]
    stage_at = min(above, key=lambda s: s.p95_ms) if above else summaries[-1]
    return Outcome(best_rate, best.p95_ms if best else math.nan, points, limiting_stage(stage_at), measuring_s)
