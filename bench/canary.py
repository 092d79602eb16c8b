"""The rollout gate against Kayenta's judge, by Monte Carlo on this service's own latencies.

Each replay is one canary at ``--share`` of the traffic (5%), run until ``--horizon`` canary
requests (3,000): every request is drawn from the recorded sample (bench/data/latency_sample.npz,
per-request totals and per-stage durations from ``Server-Timing``; ``bench/canary_record.py``
records it) or from a synthetic heavy tail, each fails with probability 0.1%, and the canary's
requests are changed by the scenario. The gate looks after EVERY request (the same decisions as
the streaming gate: servoscope/rollout/replay.py). Kayenta judges the same replays as it is
deployed — time series: one point per window of 60 canary requests (the canary's P95 and the
baseline's P95 over the same window; the error rates likewise), 50 points at the horizon, judged
on the cumulative points every 10 windows and at the end::

    python bench/canary.py                    # ~14 min on 2 busy cores
    python bench/canary.py --replays 200      # quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servoscope.stages import Stage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "latency_sample.npz"
WINDOW = 60  # canary requests per Kayenta point
LOOK_EVERY = 10  # Kayenta windows between judgements
ERROR_RATE = 0.001

Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (canary rows, baseline pool) -> canary rows


@dataclass(frozen=True)
class Scenario:
    name: str
    pool: str  # "recorded" or "lognormal"
    transform: Transform | None  # None: A/A
    canary_error_rate: float = ERROR_RATE
    stage: str | None = None  # the stage a FAIL should name


def load_recorded(path: Path) -> np.ndarray:
    from servoscope.rollout.observation import COLUMNS

    data = np.load(path)
    ok = data["status"] == 200
    return np.stack([data[_recorded_key(data.files, name)][ok] / 1e6 for name in COLUMNS], axis=1)


def _recorded_key(files: list[str], column: str) -> str:
    """The sample's key for a column; recordings made before the rename call preprocess_wait "queue"."""
    key = f"{column}_us"
    return key if key in files or column != Stage.PREPROCESS_WAIT else "queue_us"


def lognormal_pool(rng: np.random.Generator, n: int = 100_000) -> np.ndarray:
    """A heavy tail: lognormal, median 15 ms, sigma 1 (P95/P50 = 5.2), total only."""
    return (0.015 * rng.lognormal(0.0, 1.0, n))[:, None]


def scale(factor: float) -> Transform:
    return lambda rows, pool: rows * factor


def add_to_inference(pool_p95_s: float) -> Transform:
    from servoscope.rollout.observation import COLUMNS

    inference = COLUMNS.index(Stage.INFERENCE)

    def transform(rows: np.ndarray, pool: np.ndarray) -> np.ndarray:
        out = rows.copy()
        out[:, inference] += 0.2 * pool_p95_s  # a constant delay moves every quantile by itself
        out[:, 0] += 0.2 * pool_p95_s
        return out

    return transform


def stretch_tail(pool: np.ndarray) -> Transform:
    """Only answers above the P90 get slower, stretched so that the P95 rises by 20%."""
    q90, q95 = np.quantile(pool[:, 0], [0.9, 0.95])
    factor = (1.2 * q95 - q90) / (q95 - q90)

    def transform(rows: np.ndarray, _: np.ndarray) -> np.ndarray:
        total = rows[:, 0]
        slow = total > q90
        new_total = np.where(slow, q90 + (total - q90) * factor, total)
        return rows * (new_total / total)[:, None]

    return transform


def draw(rng: np.random.Generator, pool: np.ndarray, scenario: Scenario, share: float, horizon: int) -> tuple:
    n = int(horizon / share * 1.3) + 1000
    canary = rng.random(n) < share
    cut = int(np.flatnonzero(canary)[horizon - 1]) + 1
    canary = canary[:cut]
    rows = pool[rng.integers(0, len(pool), cut)]
    if scenario.transform is not None:
        rows[canary] = scenario.transform(rows[canary], pool)
    failed = rng.random(cut) < np.where(canary, scenario.canary_error_rate, ERROR_RATE)
    return canary, rows, failed


def kayenta_run(
    canary: np.ndarray, rows: np.ndarray, failed: np.ndarray, rng: np.random.Generator
) -> tuple[int | None, bool]:
    """(canary requests at Kayenta's first Fail, Fail at the end) over 60-canary-request windows."""
    from servoscope.rollout.kayenta import Direction, MetricPair, judge

    ends = np.flatnonzero(canary)[WINDOW - 1 :: WINDOW] + 1
    starts = np.concatenate([[0], ends[:-1]])
    points: dict[str, list[list[float]]] = {"c_p95": [], "b_p95": [], "c_err": [], "b_err": []}
    first = None
    fail_at_end = False
    for w, (a, b) in enumerate(zip(starts, ends), start=1):
        c, f, total = canary[a:b], failed[a:b], rows[a:b, 0]
        points["c_p95"].append(float(np.percentile(total[c & ~f], 95)) * 1e3 if (c & ~f).any() else float("nan"))
        points["b_p95"].append(float(np.percentile(total[~c & ~f], 95)) * 1e3 if (~c & ~f).any() else float("nan"))
        points["c_err"].append(float(f[c].mean()))
        points["b_err"].append(float(f[~c].mean()))
        if w % LOOK_EVERY:
            continue
        metrics = [
            MetricPair("latency_p95_ms", points["b_p95"], points["c_p95"], Direction.INCREASE),
            MetricPair("error_rate", points["b_err"], points["c_err"], Direction.INCREASE),
        ]
        failing = judge(metrics, rng=rng).classification == "Fail"
        if failing and first is None:
            first = w * WINDOW
        fail_at_end = failing
    return first, fail_at_end


def run_scenario(scenario: Scenario, pools: dict[str, np.ndarray], args: argparse.Namespace, seed: int) -> dict:
    from servoscope.rollout.config import GateConfig
    from servoscope.rollout.replay import replay

    config = GateConfig(canary_share=args.share, min_canary_requests=args.horizon)
    rng = np.random.default_rng(seed)
    pool = pools[scenario.pool]
    aa = scenario.transform is None and scenario.canary_error_rate == ERROR_RATE
    replays = args.aa_replays if aa else args.replays
    gate_at, stages, k_first, k_end = [], [], [], []
    for _ in range(replays):
        canary, rows, failed = draw(rng, pool, scenario, args.share, args.horizon)
        result = replay(canary, rows if scenario.stage else rows[:, 0], failed, config)
        gate_at.append(result.fail_at)
        stages.append(result.stage)
        if args.kayenta:
            first, end = kayenta_run(canary, rows, failed, rng)
            k_first.append(first)
            k_end.append(end)
    return {"replays": replays, "gate": gate_at, "stages": stages, "k_first": k_first, "k_end": k_end}


def detected(at: list[int | None], within: int) -> tuple[float, str]:
    hits = [a for a in at if a is not None and a <= within]
    median = f"{np.median(hits):,.0f}" if hits else "-"
    return len(hits) / len(at), median


def report(scenario: Scenario, out: dict, args: argparse.Namespace, seconds: float) -> None:
    within = 1000 if scenario.canary_error_rate != ERROR_RATE else args.horizon
    rate, median = detected(out["gate"], within)
    aa = scenario.transform is None and scenario.canary_error_rate == ERROR_RATE
    label = "false FAIL" if aa else f"power ≤{within:,}"
    line = f"{scenario.name:<44} {out['replays']:>6,} | gate {label} {rate:7.2%} median {median:>6}"
    if within < args.horizon:
        line += f" (≤{args.horizon:,}: {detected(out['gate'], args.horizon)[0]:.2%})"
    if scenario.stage:
        named = sum(s == scenario.stage for s, a in zip(out["stages"], out["gate"]) if a is not None)
        line += f" names {scenario.stage} {named / max(1, sum(a is not None for a in out['gate'])):.0%}"
    if out["k_end"]:
        k_rate, k_median = detected(out["k_first"], within)
        end = np.mean(out["k_end"])
        k_label = (
            f"false FAIL at end {end:6.2%}, any look {k_rate:6.2%}"
            if aa
            else (f"false pass {1 - end:6.2%}, detect ≤{within:,} {k_rate:6.2%} median {k_median:>6}")
        )
        line += f" | Kayenta {k_label}"
    print(line + f"  ({seconds:.0f} s)", flush=True)


def scenarios(pools: dict[str, np.ndarray]) -> list[Scenario]:
    recorded = pools["recorded"]
    p95 = float(np.quantile(recorded[:, 0], 0.95))
    return [
        Scenario("A/A recorded (false FAILs)", "recorded", None),
        Scenario("A/A lognormal σ=1 (false FAILs)", "lognormal", None),
        Scenario("recorded ×1.2 (P95 +20%)", "recorded", scale(1.2)),
        Scenario(
            f"recorded inference +{0.2 * p95 * 1e3:.1f} ms (P95 +20%)",
            "recorded",
            add_to_inference(p95),
            stage=Stage.INFERENCE,
        ),
        Scenario("recorded tail >P90 stretched (P95 +20%)", "recorded", stretch_tail(recorded)),
        Scenario("lognormal σ=1 ×1.2 (P95 +20%)", "lognormal", scale(1.2)),
        Scenario("lognormal σ=1 tail >P90 stretched (P95 +20%)", "lognormal", stretch_tail(pools["lognormal"])),
        Scenario("errors 0.1% → 1%", "recorded", None, canary_error_rate=0.01),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replays", type=int, default=500, help="replays per regression scenario")
    parser.add_argument("--aa-replays", type=int, default=2000, help="replays per A/A scenario")
    parser.add_argument("--share", type=float, default=0.05, help="canary share of the traffic")
    parser.add_argument("--horizon", type=int, default=3000, help="canary requests per replay")
    parser.add_argument("--no-kayenta", dest="kayenta", action="store_false")
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    pools = {"recorded": load_recorded(DATA), "lognormal": lognormal_pool(np.random.default_rng(args.seed))}
    q = np.quantile(pools["recorded"][:, 0], [0.5, 0.95, 0.99]) * 1e3
    print(
        f"recorded: {len(pools['recorded']):,} answers, P50 {q[0]:.1f} ms, P95 {q[1]:.1f} ms, P99 {q[2]:.1f} ms; "
        f"canary share {args.share:.0%}, horizon {args.horizon:,} canary requests, errors {ERROR_RATE:.1%}"
    )
    for i, scenario in enumerate(scenarios(pools)):
        if args.only and args.only not in scenario.name:
            continue
        started = time.perf_counter()
        out = run_scenario(scenario, pools, args, args.seed * 100 + i)
        report(scenario, out, args, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
