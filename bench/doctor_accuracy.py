"""How often the doctor names the right cause: every drill (short form) run several times, the
doctor reading only each run's two /v1/stats snapshots, a no-change case (two windows of the
same healthy traffic) where the right answer is "no regression", and the scenarios made outside
the drill code (``bench/doctor_scenarios.py``: separate processes, other sizes and magnitudes,
combined faults, changed configs, a deploy, slow uploads, their own no-change control).

    python bench/doctor_accuracy.py              # every scenario 3 times (long: ~1 hour)
    python bench/doctor_accuracy.py --repeats 1 --only outside-no-change --window-s 20

Prints the confusion table (true scenario × diagnosed cause). The doctor never sees which drill
ran: it gets the snapshot files, as it would in production. The snapshots of every run it got wrong
are kept in bench/results/doctor_accuracy_misses/ (``servoscope doctor --snapshot … --baseline …``
reads them again).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
from pathlib import Path

from servoscope.doctor import evidence
from servoscope.doctor.rules import diagnose
from servoscope.drills.runner import run_drill
from servoscope.drills.scenarios import SCENARIOS, Degradation, Scenario
from servoscope.stages import TOTAL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doctor_scenarios

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MISSES = RESULTS / "doctor_accuracy_misses"
# the cause the doctor should name for each scenario (where the names differ)
EXPECTED = {"image-drift": "input-drift", "no-change": "no-regression"}
NO_CHANGE = Scenario(
    "no-change",
    "nothing: the same healthy traffic twice",
    TOTAL,
    "no regression to find",
    lambda ctx: Degradation("nothing changed", "none", "-", "-"),
)


def diagnosed(folder: Path) -> tuple[str, float]:
    """The doctor's cause, and the total P95 of the second window over the first's."""
    base = evidence.load(folder / "baseline.json")
    now = evidence.load(folder / "degraded.json")
    return diagnose(base, now).top.cause, now.total.p95 / base.total.p95 if base.total.p95 > 0 else float("nan")


OUTSIDE = {s.name: s for s in doctor_scenarios.SCENARIOS}


def right(scenario: str, cause: str) -> bool:
    if scenario in OUTSIDE:
        return cause in OUTSIDE[scenario].expected
    return cause == EXPECTED.get(scenario, scenario)


def keep(folder: Path) -> Path:
    """A missed run's snapshots, copied where they outlive the run, to be read again."""
    kept = MISSES / folder.name
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(folder, kept)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=45.0, help="outside scenarios: seconds of load per window")
    parser.add_argument("--only", help="comma-separated scenarios (default: all, and no-change)")
    args = parser.parse_args()
    if not 1 <= args.repeats <= 10:
        parser.error("--repeats must be 1..10")
    scenarios = {**SCENARIOS, NO_CHANGE.name: NO_CHANGE}
    names = args.only.split(",") if args.only else [*scenarios, *OUTSIDE]
    unknown = [n for n in names if n not in scenarios and n not in OUTSIDE]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted([*scenarios, *OUTSIDE])}")
    runs: dict[str, list[tuple[str, float]]] = {name: [] for name in names}  # (cause, P95 ratio) per run
    with tempfile.TemporaryDirectory(prefix="doctor-accuracy-") as tmp:
        for repeat in range(args.repeats):
            for name in names:
                folder = Path(tmp) / f"{name}-{repeat}"
                if name in OUTSIDE:
                    doctor_scenarios.run(OUTSIDE[name], folder, args.window_s)
                else:
                    run_drill(scenarios[name], ROOT / "models", folder, short=True, say=lambda _: None)
                cause, p95_ratio = diagnosed(folder)
                runs[name].append((cause, p95_ratio))
                miss = "" if right(name, cause) else f"  (snapshots kept in {keep(folder).relative_to(ROOT)})"
                print(f"[{repeat + 1}/{args.repeats}] {name:<22} P95 ×{p95_ratio:<5.2f} → {cause}{miss}", flush=True)
    table = {name: collections.Counter(cause for cause, _ in done) for name, done in runs.items()}
    causes = sorted({c for counts in table.values() for c in counts})
    print(f"\n{'true scenario':<22} " + " ".join(f"{c[:14]:>14}" for c in causes))
    for name, counts in table.items():
        print(f"{name:<22} " + " ".join(f"{counts.get(c, 0):>14}" for c in causes))
    named = sum(n for name, counts in table.items() for cause, n in counts.items() if right(name, cause))
    print(f"\nright: {named} of {sum(sum(c.values()) for c in table.values())}")
    if "traffic-growth" in runs:  # the incident drill (#17): +15% should multiply P95 by >= 1.5 in 9 of 10 runs
        growth = runs["traffic-growth"]
        crossed = sum(r >= 1.5 and right("traffic-growth", c) for c, r in growth)
        print(f"traffic-growth: P95 ×1.5 or more and named in {crossed} of {len(growth)} runs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {k: {"causes": dict(v), "p95_ratios": [round(r, 3) for _, r in runs[k]]} for k, v in table.items()}
    (RESULTS / "doctor_accuracy.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
