"""``servoscope tune``: search max_batch_size, max_queue_delay, instances, intra-op threads and
preprocess workers live, against a P95 objective.

A profile (measured here, one family per instances × threads of the space, or given) lets the planner
predict every point's highest objective-meeting rate; a coordinate search (servoscope.planner.search)
starts at the best prediction and measures — a real server restarted on loopback per configuration,
open-loop windows from the load generator (servoscope.planner.trial) — at most ``--max-trials``
configurations. It prints the Pareto front (throughput against P95) of what it measured, the limiting
stage, and the settings for ``config.toml`` (``--write`` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servoscope.loadgen.command import DEFAULT_CACHE, DEFAULT_MIX
from servoscope.loadgen.mixes import Mix, draw, generated, parse_mix
from servoscope.models.config import ModelConfigError
from servoscope.models.prepare import DEFAULT_MODEL
from servoscope.models.repository import ModelEntry, find
from servoscope.planner import measure, predict, words
from servoscope.planner import profile as pf
from servoscope.planner.knobs import NAMES, Knobs, write_settings
from servoscope.planner.search import Outcome, Search, Space, Trial, coordinate_search, pareto
from servoscope.planner.trial import Target, Windows, measure_config
from servoscope.resources import available_cores

Say = Callable[[str], None]
TRIAL_SHARE = 0.15  # default budget: 15% of the grid's points
IMAGE_SLOTS = 20
PREDICT_REQUESTS = 6_000  # per simulated point: ~0.3 s of CPU per configuration for its highest rate


@dataclass(frozen=True)
class Prepared:
    """What the search starts from: the profile, each point's predicted objective-meeting rate."""

    profile: pf.Profile
    predicted: dict[Knobs, float]
    profiling_s: float  # seconds spent measuring the profile (0 when given)
    predicting_s: float  # seconds spent simulating every point


def default_space(cores: int) -> dict[str, str]:
    half = max(1, cores // 2)
    return {
        "max_batch_size": "1,4,8",
        "max_queue_delay_ms": "0,2,5",
        "instances": ",".join(str(n) for n in sorted({1, cores})),
        "intra_op_threads": ",".join(str(n) for n in sorted({1, half})),
        "preprocess_workers": ",".join(str(n) for n in sorted({half, cores})),
    }


def parse_space(texts: dict[str, str]) -> Space:
    values: dict[str, tuple[float, ...]] = {}
    for name in NAMES:
        try:
            parsed = tuple(float(x) if name == "max_queue_delay_ms" else int(x) for x in texts[name].split(","))
        except ValueError:
            flag = f"--{name.replace('_', '-')}"
            raise ValueError(f"{flag} is a comma-separated list of numbers, got {texts[name]!r}") from None
        values[name] = tuple(sorted(set(parsed)))
    return Space(values)


def families(space: Space) -> list[tuple[int, int]]:
    return [(int(n), int(t)) for n in space.values["instances"] for t in space.values["intra_op_threads"]]


def profile_space(entry: ModelEntry, space: Space, mix: Mix, mix_text: str, seconds: float, say: Say) -> pf.Profile:
    """One family per instances × threads of ``space``, batches measured up to its largest size."""
    workers = int(max(space.values["preprocess_workers"]))
    largest = int(max(space.values["max_batch_size"]))
    out = []
    for n, t in families(space):
        spec = measure.Spec(n, t, workers, largest, 0.0)
        say(f"profile: {n} instance(s) x {t} thread(s), {seconds:g} s")
        samples = asyncio.run(measure.measure_pipeline(measure.build(entry, spec), spec, mix, seconds, 0, say))
        out.append(measure.family(spec, samples, measure.size_classes(mix)))
    return pf.Profile(
        schema=pf.SCHEMA, version=pf.VERSION, model=entry.name, created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=pf.this_machine(), families=out, mix=words.mix_classes(mix_text),
    )  # fmt: skip


def predictions(profile: pf.Profile, space: Space, slo_p95_ms: float, say: Say) -> dict[Knobs, float]:
    """Each point's predicted highest objective-meeting rate (0: none meets it)."""
    out = {}
    for knobs in space.points():
        best = predict.max_rate(profile, knobs, slo_p95_ms, requests=PREDICT_REQUESTS)
        out[knobs] = best.arrival_rate_per_s if best else 0.0
    top = max(out, key=lambda k: out[k])
    say(f"predicted: {len(out)} configurations; best {out[top]:.1f} req/s at {top.describe()}")
    return out


def prepare(
    entry: ModelEntry, space: Space, mix: Mix, mix_text: str, slo_p95_ms: float, profile: Path | None,
    profile_seconds: float, say: Say,
) -> Prepared:  # fmt: skip
    started = time.monotonic()
    if profile is not None:
        measured = pf.load(profile)
        spent = 0.0
    else:
        measured = profile_space(entry, space, mix, mix_text, profile_seconds, say)
        spent = time.monotonic() - started
    started = time.monotonic()
    predicted = predictions(measured, space, slo_p95_ms, say)
    return Prepared(measured, predicted, spent, time.monotonic() - started)


def images(mix: Mix) -> tuple[bytes, ...]:
    """``IMAGE_SLOTS`` uploads drawn from the mix by weight (the live load cycles through them)."""
    return tuple(mix.images[i].data for i in draw(mix, IMAGE_SLOTS, 0))


def calibrated_measure(target: Target, windows: Windows, say: Say) -> Callable[[Knobs, float], Outcome]:
    """measure_config, each ladder starting at the prediction × the planner's bias measured so far."""
    ratios: list[float] = []

    def run(knobs: Knobs, predicted_rate: float) -> Outcome:
        bias = ratios[-1] if ratios else 0.8  # before any measurement: HTTP costs the in-process profile ~20%
        outcome = measure_config(target, knobs, max(1.0, bias * predicted_rate), windows, say)
        if outcome.rate_per_s > 0 and predicted_rate > 0:
            ratios.append(outcome.rate_per_s / predicted_rate)
        return outcome

    return run


def trial_line(trial: Trial, why: str) -> str:
    o = trial.outcome
    got = f"{o.rate_per_s:7.1f} req/s at P95 {o.p95_ms:6.1f} ms" if o.rate_per_s else "misses the objective"
    return f"  [{why}] {trial.knobs.describe()}: {got} (predicted {trial.predicted_per_s:.1f}; {o.measuring_s:.0f} s)"


def report_lines(search: Search, grid: int, prepared: Prepared, slo_p95_ms: float) -> list[str]:
    spent = search.measuring_s + prepared.profiling_s + prepared.predicting_s
    lines = [
        (
            f"measured {len(search.trials)} of {grid} configurations ({search.stopped}); {spent:.0f} s in all: "
            f"{prepared.profiling_s:.0f} s profiling, {prepared.predicting_s:.0f} s predicting, "
            f"{search.measuring_s:.0f} s measuring"
        )
    ]
    lines.append("Pareto front (throughput against P95, of every window measured):")
    for rate, p95, knobs in pareto([(t.knobs, t.outcome) for t in search.trials]):
        mark = "" if p95 <= slo_p95_ms else "  (misses the objective)"
        lines.append(f"  {rate:7.1f} req/s  P95 {p95:7.1f} ms  {knobs.describe()}{mark}")
    best = search.best
    if best is None:
        lines.append(f"no configuration measured met P95 ≤ {slo_p95_ms:g} ms")
        return lines
    lines.append(f"best: {best.outcome.rate_per_s:.1f} req/s at P95 {best.outcome.p95_ms:.1f} ms ≤ {slo_p95_ms:g} ms")
    lines.append(f"limiting stage past it: {best.outcome.limiting_stage}")
    lines.append(predicted_line(prepared.profile, best))
    lines.append("settings for config.toml (servoscope serve --config):")
    lines += ["  " + line for line in best.knobs.toml().strip().splitlines() if line]
    return lines


UNMEASURED_LOADS = (0.5, 0.75, 1.1, 1.25)  # × the best measured rate


def predicted_line(profile: pf.Profile, best: Trial) -> str:
    """The planner at loads not measured, for the best configuration: its rates scaled by the bias
    measured there (measured / predicted objective-meeting rate)."""
    bias = best.outcome.rate_per_s / best.predicted_per_s if best.predicted_per_s > 0 else 1.0
    parts = []
    for share in UNMEASURED_LOADS:
        rate = share * best.outcome.rate_per_s
        p = predict.predict(profile, best.knobs, rate / bias)
        parts.append(f"{rate:.1f} req/s → P95 {p.p95_ms:.0f} ms")
    return f"predicted there at loads not measured (the planner × its measured bias {bias:.2f}): " + "; ".join(parts)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tune", help="search batching, instances, threads and workers live against a P95 objective",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )  # fmt: skip
    p.add_argument("--slo-p95", default="200ms", help="the objective (default 200ms)")
    p.add_argument("--model-repository", type=Path, default=Path("models"))
    space = p.add_argument_group("the search space (comma-separated values; default: sized to this machine)")
    for name, default in default_space(available_cores()).items():
        space.add_argument(f"--{name.replace('_', '-')}", default=default, help=f"default {default}")
    p.add_argument("--mix", default=DEFAULT_MIX, help="image sizes of the load (default %(default)s)")
    p.add_argument("--profile", type=Path, help="a profile with every instances x threads family (default: measure)")
    p.add_argument("--profile-seconds", default="5s", help="measuring time per family (default 5s)")
    p.add_argument("--max-trials", type=int, help="most configurations measured (default: 15%% of the grid)")
    p.add_argument("--window", default="8s", help="each load window (default 8s)")
    p.add_argument("--warmup", default="2s", help="each server's warm-up load (default 2s)")
    p.add_argument("--steps", type=int, default=4, help="load windows per configuration (default 4)")
    p.add_argument("--write", type=Path, help="write the best settings into this config.toml (other keys kept)")
    p.add_argument("--json", type=Path, help="also write the trials and the front as JSON here")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    say: Say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        space = parse_space({n: getattr(args, n) for n in NAMES})
        slo_p95_ms = 1000 * words.seconds(args.slo_p95)
        windows = Windows(words.seconds(args.warmup) if args.warmup != "0" else 0.0, words.seconds(args.window),
                          args.steps)  # fmt: skip
        profile_seconds = words.seconds(args.profile_seconds)
        if profile_seconds > measure.MAX_FAMILY_S:
            raise ValueError(f"--profile-seconds is at most {measure.MAX_FAMILY_S:g} s, got {args.profile_seconds!r}")
        grid = len(space.points())
        max_trials = args.max_trials or max(1, math.floor(TRIAL_SHARE * grid))
        if max_trials < 1:
            raise ValueError(f"--max-trials must be >= 1, got {max_trials}")
        entry = find(args.model_repository, DEFAULT_MODEL)
        mix = generated(parse_mix(args.mix), 0.0, args.cache_dir)
        prepared = prepare(entry, space, mix, args.mix, slo_p95_ms, args.profile, profile_seconds, say)
    except (ValueError, ModelConfigError) as exc:  # ProfileError is a ValueError
        print(f"servoscope tune: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="servoscope-tune-") as logs:
        target = Target(args.model_repository, images(mix), slo_p95_ms, Path(logs))
        say(f"searching {grid} configurations, at most {max_trials} measured, P95 ≤ {slo_p95_ms:g} ms")
        search = coordinate_search(
            space, prepared.predicted, calibrated_measure(target, windows, say), max_trials,
            say=lambda trial, why: say(trial_line(trial, why)),
        )  # fmt: skip
    print("\n".join(report_lines(search, grid, prepared, slo_p95_ms)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(search_json(search, prepared, grid), indent=1) + "\n")
    if args.write and search.best is not None:
        write_settings(search.best.knobs, args.write)
        say(f"settings written: {args.write}")
    return 0 if search.best is not None else 1


def search_json(search: Search, prepared: Prepared, grid: int) -> dict[str, Any]:
    def trial(t: Trial) -> dict[str, Any]:
        o = t.outcome
        return {"knobs": t.knobs.to_json(), "predicted_per_s": t.predicted_per_s, "rate_per_s": o.rate_per_s,
                "p95_ms": None if math.isnan(o.p95_ms) else o.p95_ms, "points": [list(p) for p in o.points],
                "limiting_stage": o.limiting_stage, "measuring_s": o.measuring_s}  # fmt: skip

    return {
        "grid": grid, "trials": [trial(t) for t in search.trials], "stopped": search.stopped,
        "profiling_s": prepared.profiling_s, "predicting_s": prepared.predicting_s, "measuring_s": search.measuring_s,
        "best": trial(search.best) if search.best else None,
    }  # fmt: skip
