"""``servoscope tune`` against an exhaustive measured grid (issue #17's tuning figure).

Both measure with the same code (servoscope.planner.trial.measure_config: a server restarted per
configuration, the same ladder of open-loop windows, each ladder starting at the planner's
prediction corrected by the bias measured so far). The grid measures every point; the tuner runs
its coordinate search with a budget of 15% of the grid's points, and its time includes the profile
it measures first and the planner's predictions (the simulations). Target: the tuner's best
objective-meeting throughput within 5% of the grid's, in ≤ 15% of the grid's measuring time.

    python bench/tune.py --smoke       # a 4-point grid, short windows: ~1–2 min (proves the plumbing, not the ratio)
    python bench/tune.py               # 48 points (3 batch sizes × 2 delays × 2 × 2 × 2): long; a quiet machine

Figures to stdout and bench/results/tune.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from serve import RESULTS, ROOT, progress
from servoscope.loadgen.command import DEFAULT_CACHE, DEFAULT_MIX
from servoscope.loadgen.mixes import generated, parse_mix
from servoscope.models.prepare import DEFAULT_MODEL
from servoscope.models.repository import find
from servoscope.planner import tune
from servoscope.planner.knobs import Knobs
from servoscope.planner.search import Search, Trial, coordinate_search
from servoscope.planner.trial import Target, Windows

FULL = {
    "max_batch_size": "1,4,8",
    "max_queue_delay_ms": "0,2",
    "instances": "1,2",
    "intra_op_threads": "1,2",
    "preprocess_workers": "1,2",
}  # 48 points
SMOKE = {**FULL, "max_batch_size": "1,4", "max_queue_delay_ms": "0", "instances": "1", "intra_op_threads": "1"}


def _exhaustive(points: list[Knobs], predicted: dict[Knobs, float], target: Target, windows: Windows) -> Search:
    """Every point measured, in the grid's order (the search's own record, to compare alike)."""
    measure = tune.calibrated_measure(target, windows, _quiet)
    search = Search(stopped="every point measured")
    for i, knobs in enumerate(points):
        trial = Trial(knobs, predicted[knobs], measure(knobs, predicted[knobs]))
        search.trials.append(trial)
        progress(tune.trial_line(trial, f"grid {i + 1}/{len(points)}"))
    return search


def _quiet(_: str) -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a 4-point grid with short windows")
    parser.add_argument("--slo-p95", default="200ms")
    parser.add_argument("--window", type=float, help="seconds per load window (default 8; smoke 1.5)")
    parser.add_argument("--steps", type=int, help="windows per configuration (default 4; smoke 3)")
    parser.add_argument("--profile-seconds", type=float, help="per family (default 5; smoke 2)")
    args = parser.parse_args()
    smoke = args.smoke
    values = SMOKE if smoke else FULL
    space = tune.parse_space(values)
    windows = Windows(0.5 if smoke else 2.0, args.window or (1.5 if smoke else 8.0), args.steps or (3 if smoke else 4))
    slo_p95_ms = 1000 * tune.words.seconds(args.slo_p95)
    entry = find(ROOT / "models", DEFAULT_MODEL)
    mix = generated(parse_mix(DEFAULT_MIX), 0.0, DEFAULT_CACHE)
    points = len(space.points())
    budget = max(1, math.floor(tune.TRIAL_SHARE * points))
    progress(f"grid of {points} points; tuner budget {budget}; windows {windows}; P95 ≤ {slo_p95_ms:g} ms")
    prepared = tune.prepare(
        entry, space, mix, DEFAULT_MIX, slo_p95_ms, None, args.profile_seconds or (2.0 if smoke else 5.0), progress
    )
    logs = RESULTS / "tune-logs"
    target = Target(ROOT / "models", tune.images(mix), slo_p95_ms, logs)
    started = time.monotonic()
    tuned = coordinate_search(
        space, prepared.predicted, tune.calibrated_measure(target, windows, _quiet), budget,
        say=lambda trial, why: progress(tune.trial_line(trial, f"tuner: {why}")),
    )  # fmt: skip
    tuner_wall_s = time.monotonic() - started
    exhaustive = _exhaustive(space.points(), prepared.predicted, target, windows)
    figures = compare(tuned, exhaustive, prepared, tuner_wall_s)
    for line in lines(figures):
        print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tune.json"
    document = {"smoke": smoke, "space": values, "windows": windows.__dict__, **figures}
    out.write_text(json.dumps(document, indent=1) + "\n")
    progress(f"figures: {out}")
    return 0


def compare(tuned: Search, exhaustive: Search, prepared: tune.Prepared, tuner_wall_s: float) -> dict[str, Any]:
    """The tuner's time is its measuring plus the profile it measured and the predictions it simulated."""
    tuner_best = tuned.best.outcome.rate_per_s if tuned.best else 0.0
    grid_best = exhaustive.best.outcome.rate_per_s if exhaustive.best else 0.0
    profiling_s = prepared.profiling_s
    tuner_s = tuned.measuring_s + profiling_s + prepared.predicting_s
    return {
        "grid_points": len(exhaustive.trials), "tuner_trials": len(tuned.trials),
        "grid_best_per_s": grid_best, "tuner_best_per_s": tuner_best,
        "throughput_ratio": tuner_best / grid_best if grid_best else math.nan,
        "grid_measuring_s": exhaustive.measuring_s, "tuner_measuring_s": tuner_s, "tuner_wall_s": tuner_wall_s,
        "profiling_s": profiling_s, "predicting_s": prepared.predicting_s,
        "time_ratio": tuner_s / exhaustive.measuring_s,
        "grid_best": exhaustive.best.knobs.to_json() if exhaustive.best else None,
        "tuner_best": tuned.best.knobs.to_json() if tuned.best else None,
    }  # fmt: skip


def lines(f: dict[str, Any]) -> list[str]:
    return [
        (
            f"grid:  {f['grid_points']} points, best {f['grid_best_per_s']:.1f} req/s, "
            f"measuring {f['grid_measuring_s']:.0f} s"
        ),
        (
            f"tuner: {f['tuner_trials']} measured, best {f['tuner_best_per_s']:.1f} req/s, "
            f"measuring {f['tuner_measuring_s']:.0f} s "
            f"({f['profiling_s']:.0f} s of it profiling, {f['predicting_s']:.0f} s predicting)"
        ),
        f"tuner / grid: throughput ×{f['throughput_ratio']:.3f} (≥ 0.95), time ×{f['time_ratio']:.3f} (≤ 0.15)",
    ]


if __name__ == "__main__":
    sys.exit(main())
